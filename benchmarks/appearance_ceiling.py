"""Ceiling of the appearance figures: what a generator with perfect colours would score through this pipeline.

Each head is generated from its label map as ``s3d-eval --appearance`` does; then its vertex colours are
replaced by the ground truth's (the colour of the nearest ground-truth vertex) and the figures of
training/appearance_eval.py are measured on that mesh. What is lost is what the mesh itself cannot hold
(a 128^3 marching-cubes mesh against SynHead's own mesh), not the network's fault; the issue's targets
read against this ceiling.

    python benchmarks/appearance_ceiling.py --data /work/data/synhead_val --split train --heads 12
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="SynHead folder")
    ap.add_argument("--split", default="test", choices=["test", "train", "all"])
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--weights", default=None, help="weights folder (default: the bundled weights/)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)

    import torch
    from scipy.spatial import cKDTree

    from backend.export import read_ply
    from backend.pipeline import GenerateOptions, generate, load_models
    from training.appearance_eval import appearance_figures, group_colours, sharpness_pair
    from training.datasets import SynHead, read_ids

    torch.set_num_threads(args.threads)
    models = load_models(args.weights, device="cpu", need_sketch=False)
    data = SynHead(args.data, args.split, limit=args.heads)
    heads = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, sample in enumerate(data.samples):
            out = Path(tmp) / str(i)
            generate(read_ids(sample.path("mask")), out, GenerateOptions(seed=1, from_mask=True, no_frame=True,
                                                                         formats=("ply",)), models=models)
            gen = read_ply((out / "mesh.ply").read_bytes())
            gt = read_ply(sample.path("mesh").read_bytes())
            nearest = cKDTree(gt["vertices"]).query(gen["vertices"])[1]
            ideal = dict(gen, rgb=gt["rgb"][nearest])  # the generated shape and labels, the true colours
            heads.append({"gen": group_colours(ideal["rgb"], ideal["label"]), "gt": group_colours(gt["rgb"], gt["label"]),
                          "sharpness": sharpness_pair(ideal, gt)})
    fig = appearance_figures(heads, [], [])
    print(json.dumps({k: v for k, v in fig.items() if k not in ("hair_diversity_ratio", "hair_spread_over_seeds_de",
                                                                 "hair_spread_over_heads_de")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
