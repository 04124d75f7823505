"""How much of a test head's geometry its label mask determines: a nearest-mask retrieval baseline for the
geometry metrics of ``s3d-eval``.

For each SynHead test head, the training heads whose front label masks agree best with the test mask
(fraction of equal labels after mode-pooling both to ``--mask-resolution`` px) are looked up, and their
*ground-truth* meshes are scored against the test head's ground truth exactly as ``s3d-eval`` scores a
network's mesh (visible reference on both sides, 20k samples, 3 mm next to the box faces left out; whole
head, face and hair). Two numbers per head:

* ``top1``: the single best-agreeing training head, a baseline that only copies; a mask -> 3D network
  should beat it, since it can combine heads;
* ``best_of_k``: the best of the ``--k`` best-agreeing heads by Chamfer distance (chosen with the truth, an
  oracle): how close a real head that looks the same in the mask comes.

Both compare ground-truth meshes, so they carry no marching-cubes staircase (the perfect-network
ceiling of ``benchmarks/geometry_ceiling.py`` is 1.83 mm / F@5mm 0.996 under the visible reference).

Usage::

    python benchmarks/retrieval_baseline.py --data /work/data/synhead3_test --train-data /work/data/synhead3 \
        [--limit 30] [--k 5] [--out r.json]

``--data`` holds the test heads, ``--train-data`` (default: the same folder) the training heads.
Prints one line per test head and the means.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

def pooled_masks(samples, resolution: int) -> np.ndarray:
    """``(N, resolution * resolution)`` uint8 label ids of the samples' masks, mode-pooled."""
    from training.datasets import mode_pool, read_ids

    return np.stack([mode_pool(read_ids(s.path("mask")), resolution).reshape(-1) for s in samples])


def nearest_masks(query: np.ndarray, bank: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(k,)`` into ``bank (N, P)`` of the rows with the largest fraction of labels equal to
    ``query (P,)``, best first, and those fractions ``(k,)`` in [0, 1]."""
    agreement = (bank == query[None]).mean(1)
    order = np.argsort(-agreement, kind="stable")[:k]
    return order, agreement[order]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="SynHead folder with the test heads")
    p.add_argument("--train-data", help="SynHead folder with the training heads (default: --data)")
    p.add_argument("--limit", type=int, default=30, help="first N test heads (s3d-eval's --limit 30)")
    p.add_argument("--k", type=int, default=5, help="candidates for the best-of-k oracle")
    p.add_argument("--mask-resolution", type=int, default=64)
    p.add_argument("--out", type=Path, help="write the per-head rows and means as JSON")
    args = p.parse_args(argv)
    if args.k < 1 or args.limit < 1:
        p.error("--k and --limit must be >= 1")

    from training.datasets import SynHead
    from training.geometry_eval import GEOMETRY_REGIONS, geometry_metrics, mesh_surface_points

    t0 = time.time()
    train, test = SynHead(args.train_data or args.data, "train"), SynHead(args.data, "test", limit=args.limit)
    bank = pooled_masks(train.samples, args.mask_resolution)
    print(f"{len(train)} training masks pooled to {args.mask_resolution} px in {time.time() - t0:.0f} s",
          file=sys.stderr)
    rng = np.random.default_rng(0)
    rows = []
    for s, query in zip(test.samples, pooled_masks(test.samples, args.mask_resolution)):
        gt_pts, gt_labels = mesh_surface_points(s.path("mesh"), 20000, rng, with_labels=True)
        order, agreement = nearest_masks(query, bank, args.k)
        scores = [geometry_metrics(mesh_surface_points(train.samples[i].path("mesh"), 20000, rng), gt_pts, gt_labels)
                  for i in order]
        best = int(np.argmin([r["chamfer_mm"] for r in scores]))
        row = {"id": s.entry.get("id"), "seed": s.seed, "top1_seed": train.samples[order[0]].seed,
               "top1_agreement": float(agreement[0]),
               **{f"top1_{key}": v for key, v in scores[0].items()},
               **{f"best_of_k_{key}": v for key, v in scores[best].items()}}
        rows.append(row)
        print(f"  {row['id']}: nearest seed {row['top1_seed']} (agreement {row['top1_agreement']:.3f}) "
              f"{row['top1_chamfer_mm']:.2f} mm / F@5mm {row['top1_fscore_5mm']:.3f}; best of {args.k} "
              f"{row['best_of_k_chamfer_mm']:.2f} mm / {row['best_of_k_fscore_5mm']:.3f}", file=sys.stderr)
    keys = [k for k in rows[0] if k.startswith(("top1_", "best_of_k_")) and k != "top1_seed"]
    means = {f"mean_{k}": float(np.mean([r[k] for r in rows if k in r])) for k in keys}
    report = {"data": str(args.data), "train_data": str(args.train_data or args.data), "count": len(rows),
              "k": args.k, "mask_resolution": args.mask_resolution, "regions": list(GEOMETRY_REGIONS), "seconds": round(time.time() - t0, 1), **means, "per_head": rows}
    if args.out:
        from backend.weights import atomic_write_text

        atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: round(v, 4) for k, v in means.items()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
