"""What the metrics of ``s3d-eval`` give for a *perfect* mask -> 3D network: the ceiling of the Chamfer
distance and F-score under each choice of ground-truth reference, and of the front-view label consistency.

For each SynHead test head, the exact occupancy of its ground-truth solid (inside any closed part of
``mesh.ply``: head, hair, eyeballs, ..., trimesh's ray-parity ``contains``) goes through the product's own
mesh extraction (backend/mesh.py: coarse-to-fine grid, marching cubes, largest component, Taubin
smoothing) and is scored like a network's mesh against

* ``all``: area-uniform samples of every part's surface, interior surfaces included (the scalp under the
  hair, the back halves of the eyeballs inside the skull): what ``s3d-eval`` used in sessions 1 and 2;
* ``outer``: samples of the outer surface of the solid only (``mesh_surface_points(..., reference="outer")``),
  what ``s3d-eval`` used in session 3;
* ``visible``: samples of the surface a camera outside can see, on both sides (the extracted mesh's
  samples filtered the same way, ``visible_samples``): what ``s3d-eval`` uses since session 4; also
  restricted to the truth's face and hair (``visible_face``, ``visible_hair``, as s3d-eval's ``*_face``,
  ``*_hair``).

The occupancy here is binary (0 or 1), so marching cubes staircases it: the numbers are a lower bound on
what a smooth field with the same surface reaches, not a fit.

Label consistency: SynHead's own front-view label render (128 px, the ground-truth head itself) against
the input mask mode-pooled to 128 px, as ``s3d-eval`` compares a network's semantic render with it.

Usage::

    python benchmarks/geometry_ceiling.py --data /work/data/synhead [--limit 5] [--grid 256]

Prints one line per head and the means.
"""
from __future__ import annotations

import argparse
from collections import defaultdict
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def solid_occupancy(mesh_path: Path):
    """``(N, 3)`` normalised box coordinates -> ``(N,)`` float32, 1 inside any closed part of the mesh."""
    import trimesh

    from backend.coords import box_to_metres

    parts = [p for p in trimesh.load(mesh_path, force="mesh", process=False).split(only_watertight=False)
             if p.is_watertight]

    def occupancy(xyz: np.ndarray) -> np.ndarray:
        pts = box_to_metres(np.asarray(xyz, np.float64))
        inside = np.zeros(len(pts), bool)
        for part in parts:
            inside |= part.contains(pts)
        return inside.astype(np.float32)

    return occupancy


def main(argv: list[str] | None = None) -> int:
    import trimesh

    from backend.mesh import density_grid, extract_mesh
    from backend.labels import NUM_CLASSES
    from training.datasets import SynHead, mode_pool, read_ids
    from training.geometry_eval import inside_box, mesh_surface_points, region_geometry, visible_samples
    from training.metrics import chamfer_fscore, confusion_matrix, segmentation_scores

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="SynHead folder (its test split is used)")
    ap.add_argument("--limit", type=int, default=5, help="first N test heads")
    ap.add_argument("--grid", type=int, default=256, help="grid cells per side, as s3d-eval's --grid")
    args = ap.parse_args(argv)

    data = SynHead(args.data, "test", limit=args.limit)
    keys = ("chamfer_mm", "fscore_2mm", "fscore_5mm", "recall_5mm")
    rows: dict[str, list[dict[str, float]]] = defaultdict(list)
    conf = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)
    for s in data.samples:
        t0 = time.time()
        rng = np.random.default_rng(0)
        mesh = extract_mesh(density_grid(solid_occupancy(s.path("mesh")), args.grid, 0.5, levels=3), max_faces=None)
        tm = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
        pred, _ = trimesh.sample.sample_surface(tm, 30000, seed=1)
        pred = inside_box(np.asarray(pred))[:20000]
        line = [f"{s.entry.get('id')}:"]
        pred_visible = visible_samples(tm, 20000, rng)
        results = {name: chamfer_fscore(pred, mesh_surface_points(s.path("mesh"), 20000, rng, reference=name))
                   for name in ("all", "outer")}
        gt, labels = mesh_surface_points(s.path("mesh"), 20000, rng, with_labels=True)
        results["visible"] = chamfer_fscore(pred_visible, gt)
        results.update({f"visible_{region}": r for region, r in region_geometry(pred_visible, gt, labels).items()})
        for key, r in results.items():
            rows[key].append(r)
            line.append(f"{key} " + " ".join(f"{k} {r[k]:.3f}" for k in keys))
        front = next((v for v in s.entry.get("views", []) if v.get("name") == "front" and v.get("label")), None)
        if front is not None:
            render = read_ids(s.root / front["label"])
            conf += confusion_matrix(render, mode_pool(read_ids(s.path("mask")), render.shape[0]), NUM_CLASSES)
        print("  ".join(line) + f"  ({time.time() - t0:.1f} s)", flush=True)
    for name, rs in rows.items():
        print(f"mean over {len(rs)} heads, reference '{name}': "
              + ", ".join(f"{k} {np.mean([r[k] for r in rs]):.3f}" for k in keys))
    if conf.any():
        print(f"front-view label consistency of the ground truth itself: mIoU {segmentation_scores(conf)['miou']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
