"""Sketch -> mask mIoU of cat sketch networks on SynCat test cats drawn as quick doodles (issue 40).

Real cat doodles draw the whole animal with the head small at one end, and a face of a few marks; the
SynCat styles draw heads only, with whole eyes. This script re-draws each SynCat test cat from its strokes
in three protocols (training/syncat/quick_drawings.py; one generator per cat and protocol, so every run
draws the same sketches) and measures each weights folder's ``sketch2mask_cat_lite`` against the
transformed label map:

* ``marks``: the face reduced to marks (:func:`minimal_face_marks`);
* ``body``: the whole cat with the head small (:func:`head_with_body`; the body is background);
* ``body+marks``: both.

Each protocol's drawing is made a doodle (training/syncat/strokes.py ``doodle_strokes``) for odd cats,
kept clean for even ones. Printed: one row per weights folder, mIoU per protocol and the eyes' IoU.

Usage::

    python benchmarks/quick_cat_doodles.py --data /work/data/syncat --weights bundled=weights \
        --weights Q=/work/runs/s26/w_Q [--limit 200] [--threads 1]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.labels import CAT  # noqa: E402
from backend.sketch.raster import rasterize_strokes  # noqa: E402

PROTOCOLS = ("marks", "body", "body+marks")


def drawings(item: dict, index: int, protocol: str) -> tuple[np.ndarray, np.ndarray]:
    """``(sketch (R, R) float32 in [0, 1], mask (R, R) uint8)`` of one SynCat item in ``protocol``."""
    from training.syncat.quick_drawings import head_with_body, minimal_face_marks
    from training.syncat.strokes import doodle_strokes

    rng = np.random.default_rng([index, PROTOCOLS.index(protocol)])
    doc, mask = item["strokes"], item["mask"]
    if "marks" in protocol:
        doc = minimal_face_marks(doc, rng)
    if "body" in protocol:
        doc, mask = head_with_body(doc, mask, rng)
    if index % 2:
        doc = doodle_strokes(doc, rng)
    sketch = rasterize_strokes(doc, size=item["sketch"].shape[0]).astype(np.float32) / 255.0
    return sketch, mask


def measure(net, data, limit: int, batch: int = 8) -> dict:
    """mIoU and eyes IoU per protocol of one network on the first ``limit`` items with strokes."""
    from training.metrics import confusion_matrix, segmentation_scores

    k = CAT.num_classes
    out = {}
    for protocol in PROTOCOLS:
        conf = np.zeros((k, k), np.int64)
        pending: list[tuple[np.ndarray, np.ndarray]] = []

        def flush():
            x = torch.from_numpy(np.stack([p[0] for p in pending]))[:, None]
            for (_, mk), pr in zip(pending, net.predict_ids(x, True).numpy()):
                conf[...] += confusion_matrix(pr, mk, k)
            pending.clear()

        n = 0
        for i in range(len(data)):
            item = data.sketch_item(i)
            if not item.get("strokes"):
                continue
            pending.append(drawings(item, i, protocol))
            n += 1
            if len(pending) == batch:
                flush()
            if n >= limit:
                break
        if pending:
            flush()
        seg = segmentation_scores(conf)
        out[protocol] = {"miou": round(float(seg["miou"]), 4),
                         "eyes_iou": round(float(seg["per_class_iou"][CAT.names.index("eyes")]), 4), "count": n}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="SynCat folder (its test split is read)")
    ap.add_argument("--weights", action="append", required=True, help="LABEL=FOLDER holding sketch2mask_cat_lite")
    ap.add_argument("--limit", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", help="JSON file for the numbers")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from backend.models.loading import load_model
    from training.datasets import open_sketch_data

    data = open_sketch_data(args.data, "test")
    if data.labels is not CAT:
        ap.error(f"{args.data} is not SynCat (label set {data.labels.name})")
    report = {}
    for spec in args.weights:
        label, _, folder = spec.partition("=")
        net, _ = load_model("sketch2mask", folder, "cpu", name="sketch2mask_cat_lite", label_set=CAT.name)
        report[label] = measure(net, data, args.limit)
        print(label.ljust(12) + "  ".join(f"{p} mIoU {r['miou']:.3f} eyes {r['eyes_iou']:.3f}"
                                          for p, r in report[label].items()), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
