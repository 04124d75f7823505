"""Surface quality of generated heads: topology, roughness against the ground truth, the bottom cut.

Each head of a SynHead folder is generated as the evaluation does it (training/appearance_eval.py):
``s3d generate MASK --from-mask --no-frame --seed S`` on the head's own 512 px label map, through
``backend.pipeline.generate`` with the bundled (or given) weights, and its ``mesh.ply`` is measured:

* **genus** ``(2 * pieces - chi) / 2`` with ``chi = V - E + F`` (trimesh's Euler number) and **pieces**
  (connected components over shared vertices); **watertight** (every edge has exactly two faces).
* **roughness**: the area-weighted mean absolute discrete mean curvature ``sum_e |theta_e| l_e / (2 A)``
  in 1/m (theta_e the angle between the normals of an edge's two faces, l_e its length; the Steiner-formula
  estimate of the integral of |H|, e.g. Meyer et al. 2003), over the faces above the bottom cut
  (centroid z > box bottom + 10 mm), after both meshes are decimated (fast-simplification) to a common
  mean edge length of ``--edge-mm`` (4 mm, about the ground truth's own) so the tessellations compare.
  The ratio is generated over ground truth (the ground truth's ``mesh.ply``: head, hair, eyes, ... as
  separate closed pieces, clipped the same way).
* **repair** (when the backend records it in result.json's ``mesh``): ``handle_fix`` (closing / opening /
  none), its ball radius in cells and the grid points it moved to the other side of the level.
* **bottom cut**: ``cap_fraction`` = area of the faces lying within 2 mm of the lowest point with a normal
  within 3 degrees of straight down, over the area of the mesh's cross-section 2 mm above the lowest point
  (1.0 for a closed flat cap); ``cap_dev_mm`` = the largest height of those cap faces' vertices above the
  lowest point (0 for an exactly planar cap).

Run with ``OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/surface_quality.py --data
/work/data/synhead_test --heads 30`` (about 5 s a head on a busy 2-core CPU). ``--texture-sizes 1024,2048``
first times the ``texture`` option on the first head (:func:`texture_cost`).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

BOX_BOTTOM_M = -0.20


def _decimate_to_edge(vertices: np.ndarray, faces: np.ndarray, edge_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Quadric decimation of a mesh ``(V, 3)`` metres / ``(F, 3)`` to about mean edge ``edge_m`` metres."""
    import fast_simplification
    import trimesh

    m = trimesh.Trimesh(vertices, faces, process=False)
    target = int(m.area / (np.sqrt(3) / 4 * edge_m ** 2))
    if target >= len(faces):
        return np.asarray(vertices, np.float64), np.asarray(faces, np.int64)
    v, f = fast_simplification.simplify(np.asarray(vertices, np.float32), np.asarray(faces, np.int32),
                                        target_reduction=1.0 - target / len(faces))
    return np.asarray(v, np.float64), np.asarray(f, np.int64)


def roughness(vertices: np.ndarray, faces: np.ndarray, z_above: float, edge_m: float = 0.004) -> float:
    """Area-weighted mean |mean curvature| (1/m) of the faces with centroid z > ``z_above`` (metres),
    after decimation to mean edge ``edge_m``: ``sum_e |theta_e| l_e / (2 A)`` over interior edges."""
    import trimesh

    v, f = _decimate_to_edge(vertices, faces, edge_m)
    m = trimesh.Trimesh(v, f, process=False)
    keep = m.triangles_center[:, 2] > z_above
    pairs = m.face_adjacency
    both = keep[pairs[:, 0]] & keep[pairs[:, 1]]
    angles = m.face_adjacency_angles[both]
    edge_len = np.linalg.norm(np.diff(m.vertices[m.face_adjacency_edges[both]], axis=1)[:, 0], axis=1)
    area = float(m.area_faces[keep].sum())
    return float((angles * edge_len).sum() / (2.0 * area)) if area > 0 else float("nan")


def topology(vertices: np.ndarray, faces: np.ndarray) -> dict:
    """``{"genus", "pieces", "watertight", "euler"}`` of a triangle mesh (shared-vertex connectivity)."""
    import trimesh

    m = trimesh.Trimesh(vertices, faces, process=False)
    pieces = int(m.body_count)
    chi = int(m.euler_number)
    return {"genus": (2 * pieces - chi) / 2.0, "pieces": pieces, "watertight": bool(m.is_watertight), "euler": chi}


def bottom_cap(vertices: np.ndarray, faces: np.ndarray, band_m: float = 0.002) -> dict:
    """``cap_fraction`` and ``cap_dev_mm`` of the bottom cut (module docstring)."""
    import trimesh

    m = trimesh.Trimesh(vertices, faces, process=False)
    zmin = float(m.vertices[:, 2].min())
    low = m.vertices[:, 2] < zmin + band_m
    cap = low[m.faces].all(axis=1) & (m.face_normals[:, 2] < -np.cos(np.radians(3.0)))
    cap_area = float(m.area_faces[cap].sum())
    sec_area = section_area(m, zmin + band_m)
    dev = float((m.vertices[np.unique(m.faces[cap]), 2] - zmin).max() * 1000.0) if cap.any() else float("nan")
    return {"cap_fraction": cap_area / sec_area if sec_area > 0 else float("nan"), "cap_dev_mm": dev,
            "zmin_m": zmin}


def section_area(mesh, z: float) -> float:
    """Area (m^2) enclosed by the cross-section of a closed ``trimesh.Trimesh`` at height ``z``: shoelace
    over the section's segments, each oriented along ``z_axis x face normal`` (counter-clockwise from above)."""
    from trimesh.intersections import mesh_plane

    seg, face_idx = mesh_plane(mesh, [0, 0, 1], [0, 0, z], return_faces=True)
    if len(seg) == 0:
        return 0.0
    tangent = np.cross([0.0, 0.0, 1.0], mesh.face_normals[face_idx])
    flip = ((seg[:, 1] - seg[:, 0]) * tangent).sum(axis=1) < 0
    seg[flip] = seg[flip][:, ::-1]
    p, q = seg[:, 0], seg[:, 1]
    return float(0.5 * (p[:, 0] * q[:, 1] - q[:, 0] * p[:, 1]).sum())


def measure_head(gen: dict, gt: dict, edge_m: float) -> dict:
    """All figures of one generated head ``gen`` against its ground truth ``gt`` (read_ply dicts)."""
    row = topology(gen["vertices"], gen["faces"])
    row.update(bottom_cap(gen["vertices"], gen["faces"]))
    z_above = BOX_BOTTOM_M + 0.010
    r_gen = roughness(gen["vertices"], gen["faces"], z_above, edge_m)
    r_gt = roughness(gt["vertices"], gt["faces"], z_above, edge_m)
    row.update(roughness_gen=r_gen, roughness_gt=r_gt, roughness_ratio=r_gen / r_gt)
    return row


def texture_cost(models, mask: np.ndarray, seed: int, resolution: int, sizes: list[int]) -> list[dict]:
    """Time and file sizes of the ``texture`` option on one head: the job's stages called in order
    (backend/stages.py, default options, formats ply, obj, glb), then ``stages.export`` without a texture
    and with each of ``sizes`` (pixels). Rows: ``size``, ``export_s``, ``texture`` (result.json's record),
    ``mb`` (megabytes of each mesh / texture file)."""
    import os

    from backend import stages
    from backend.options import GenerateOptions

    o = GenerateOptions(seed=seed, resolution=resolution, from_mask=True, no_frame=True)
    sk = stages.intake(mask, "head", True, True)
    m = stages.sketch_to_mask(sk, None, models.device)
    planes = stages.planes(m, models.mask2triplane, seed, models.device)
    grid = stages.density_grid(planes, resolution, lambda: None)
    head = stages.mesh(grid, o.smooth_iterations, o.max_faces)
    head, views = stages.vertex_colors(head, planes, o.views, o.color_resolution, seed, lambda: None)
    rows = []
    for size in [None] + list(sizes):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            out = stages.export(Path(tmp), head, m, views, ("ply", "obj", "glb"), o.view_resolution, lambda: None,
                                texture_size=size)
            secs = time.perf_counter() - t0
            mb = {f: round(os.path.getsize(Path(tmp) / f) / 1e6, 2) for f in sorted(out.files)
                  if f.startswith(("mesh.", "texture."))}
        rows.append({"size": size, "export_s": round(secs, 2), "texture": out.texture, "mb": mb,
                     "faces": int(len(head.faces))})
        print(f"texture {size}: export {secs:.2f} s, {out.texture}, MB {mb}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    """Generate and measure ``--heads`` heads; print one line a head and a summary; ``--json`` saves rows."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="SynHead folder (manifest.json)")
    p.add_argument("--heads", type=int, default=30)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--resolution", type=int, default=128)
    p.add_argument("--edge-mm", type=float, default=4.0)
    p.add_argument("--weights", default=None)
    p.add_argument("--json", default=None, help="write the rows and summary here")
    p.add_argument("--texture-sizes", default="", help="also time the texture option at these sizes (e.g. "
                   "1024,2048) on the first head, through backend/stages.py")
    args = p.parse_args(argv)

    from backend.export import read_ply
    from backend.pipeline import GenerateOptions, generate, load_models
    from training.datasets import read_ids

    data = Path(args.data)
    samples = json.loads((data / "manifest.json").read_text())["samples"][: args.heads]
    models = load_models(args.weights, "cpu", need_sketch=False)
    sizes = [int(x) for x in args.texture_sizes.split(",") if x.strip()]
    tex_rows = texture_cost(models, read_ids(data / samples[0]["mask"]), args.seed, args.resolution, sizes) \
        if sizes else []
    rows = []
    print(f"{'head':8} {'genus':>5} {'pieces':>6} {'tight':>5} {'rough':>7} {'gt':>7} {'ratio':>6} "
          f"{'cap':>5} {'dev_mm':>6} {'gen_s':>5} repair")
    with tempfile.TemporaryDirectory() as tmp:
        for s in samples:
            out = Path(tmp) / s["id"]
            t0 = time.perf_counter()
            generate(read_ids(data / s["mask"]), out, GenerateOptions(
                seed=args.seed, resolution=args.resolution, from_mask=True, no_frame=True), models=models)
            secs = time.perf_counter() - t0
            row = measure_head(read_ply((out / "mesh.ply").read_bytes()),
                               read_ply((data / s["mesh"]).read_bytes()), args.edge_mm / 1000.0)
            stats = json.loads((out / "result.json").read_text())["mesh"]
            row.update(id=s["id"], generate_s=round(secs, 2),
                       **{k: stats[k] for k in ("handle_fix", "handle_radius", "points_changed") if k in stats})
            rows.append(row)
            print(f"{s['id']:8} {row['genus']:5.0f} {row['pieces']:6d} {str(row['watertight'])[0]:>5} "
                  f"{row['roughness_gen']:7.2f} {row['roughness_gt']:7.2f} {row['roughness_ratio']:6.2f} "
                  f"{row['cap_fraction']:5.2f} {row['cap_dev_mm']:6.2f} {secs:5.1f} {row.get('handle_fix', '-')}"
                  f" {row.get('handle_radius', '')} {row.get('points_changed', '')}", flush=True)
    summary = summarise(rows)
    print("summary:", json.dumps(summary))
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "summary": summary, "texture": tex_rows,
                                               "args": vars(args)}, indent=1))
    return 0


def summarise(rows: list[dict]) -> dict:
    """Counts against the targets (genus 0, one piece, watertight, roughness ratio <= 1.5, flat cap) and means."""
    ratio = np.array([r["roughness_ratio"] for r in rows])
    cap = np.array([r["cap_fraction"] for r in rows])
    dev = np.array([r["cap_dev_mm"] for r in rows])
    return {"heads": len(rows),
            "genus0": sum(r["genus"] == 0 for r in rows), "one_piece": sum(r["pieces"] == 1 for r in rows),
            "watertight": sum(r["watertight"] for r in rows),
            "roughness_ratio_mean": round(float(ratio.mean()), 3), "roughness_ratio_max": round(float(ratio.max()), 3),
            "roughness_ratio_le_1_5": int((ratio <= 1.5).sum()),
            "cap_fraction_mean": round(float(np.nanmean(cap)), 3), "cap_fraction_min": round(float(np.nanmin(cap)), 3),
            "cap_dev_mm_max": round(float(np.nanmax(dev)), 3),
            "generate_s_mean": round(float(np.mean([r["generate_s"] for r in rows])), 2)}


if __name__ == "__main__":
    raise SystemExit(main())
