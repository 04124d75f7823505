"""Real drawings -> masks, with and without the paper clean-up; plausibility of each mask; a contact sheet.

For every image in a folder (no meshes are made: only the sketch -> mask stage), runs the sketch
network twice, on the intake without the paper clean-up (``load_sketch(..., clean=False)``, the intake
before issue 37) and with it, through the same framing and second framing pass as ``s3d generate``
(:func:`backend.pipeline.predict_mask_with_refined_framing`), and checks both masks in the input's
frame with :func:`backend.mask_plausibility.check_mask`.

Usage::

    python benchmarks/check_paper_sketches.py SKETCH_DIR [--sheet docs/img/paper_sketches.png]
        [--debug-dir DIR] [--weights DIR] [--tile 160]

Prints per sketch and per variant: hair fraction, hair along the border (fraction of the border strip,
sides), face found, warnings; then the totals. The sheet's columns: input, mask without the clean-up,
the intake's result (what the network reads), mask with the clean-up. ``--debug-dir`` writes each
sketch's stage strip (``<name>_intake_debug.png``). Exit code 1 when a mask with the clean-up has a
warning.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


def predict(net, source: Path, clean: bool, keep_stages: bool = False):
    """``(SketchInput, mask (H, W) uint8 ids in the input's frame, MaskCheck)`` for one image."""
    from backend.align import frame_sketch, unframe_mask
    from backend.mask_plausibility import check_mask
    from backend.pipeline import predict_mask_with_refined_framing
    from backend.sketch.intake import load_sketch

    sk = load_sketch(source, keep_stages=keep_stages, clean=clean)
    sketch512, t = frame_sketch(sk.image, 512)
    _, mask512, t = predict_mask_with_refined_framing(net, sk.image, sketch512, t)
    mask = unframe_mask(mask512, t)
    return sk, mask, check_mask(mask, sk.image)


def _tile(img: np.ndarray, tile: int) -> np.ndarray:
    from PIL import Image

    im = Image.fromarray(img).convert("RGB")
    im.thumbnail((tile, tile))
    canvas = Image.new("RGB", (tile, tile), (255, 255, 255))
    canvas.paste(im, ((tile - im.size[0]) // 2, (tile - im.size[1]) // 2))
    return np.asarray(canvas)


def line(name: str, variant: str, check) -> str:
    m = check.measures
    face = "face" if m.get("face_fraction", 0) > 0 and "no_face" not in check.codes else "NO face"
    return (f"{name:<30} {variant:<9} hair {m['hair_fraction']:.1%}, hair on border {m['hair_border_fraction']:.1%} "
            f"(sides: {','.join(m['hair_sides']) or '-'}), {face}, warnings: {','.join(check.codes) or 'none'}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("sketch_dir")
    p.add_argument("--sheet", default=None, help="contact sheet PNG to write")
    p.add_argument("--debug-dir", default=None, help="write each sketch's intake stage strip here")
    p.add_argument("--weights", default=None)
    p.add_argument("--tile", type=int, default=160, help="pixels a side of each sheet tile")
    p.add_argument("--json", default=None, help="write the per-sketch measures here")
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from PIL import Image

    from backend.labels import colorize
    from backend.models.loading import load_sketch2mask
    from backend.sketch.paper import debug_strip
    from backend.weights import DEFAULT_WEIGHTS_DIR

    net, _ = load_sketch2mask(args.weights or DEFAULT_WEIGHTS_DIR, "cpu")
    inputs = sorted(q for q in Path(args.sketch_dir).iterdir() if q.suffix.lower() in SUFFIXES)
    rows, report = [], {}
    totals = {"before": 0, "after": 0}
    for q in inputs:
        raw = np.asarray(Image.open(q).convert("L"))
        _, mask0, c0 = predict(net, q, clean=False)
        sk, mask1, c1 = predict(net, q, clean=True, keep_stages=bool(args.debug_dir))
        print(line(q.name, "before", c0))
        print(line(q.name, "after", c1))
        print(f"{'':<30} intake steps: {', '.join(sk.intake.get('steps', [])) or 'none'}")
        totals["before"] += bool(c0.warnings)
        totals["after"] += bool(c1.warnings)
        report[q.name] = {"before": {"warnings": c0.codes, **c0.measures},
                          "after": {"warnings": c1.codes, **c1.measures}, "intake": sk.intake}
        if args.debug_dir:
            Path(args.debug_dir).mkdir(parents=True, exist_ok=True)
            Image.fromarray(debug_strip(sk.stages)).save(Path(args.debug_dir) / f"{q.stem}_intake_debug.png")
        rows.append(np.hstack([_tile(raw, args.tile), _tile(colorize(mask0), args.tile), _tile(sk.image, args.tile),
                               _tile(colorize(mask1), args.tile)]))
    n = len(inputs)
    print(f"masks with a warning: {totals['before']} of {n} without the paper clean-up, {totals['after']} of {n} with it")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    if args.sheet and rows:
        Path(args.sheet).parent.mkdir(parents=True, exist_ok=True)
        # two sketches per sheet row keeps the picture readable
        if len(rows) % 2:
            rows.append(np.full_like(rows[0], 255))
        pairs = [np.hstack([rows[i], np.full((rows[i].shape[0], 8, 3), 255, np.uint8), rows[i + 1]])
                 for i in range(0, len(rows), 2)]
        Image.fromarray(np.vstack(pairs)).save(args.sheet, optimize=True)
        print(f"sheet: {args.sheet} (per sketch: input, mask without the clean-up, intake result, mask with it)")
    return 1 if totals["after"] else 0


if __name__ == "__main__":
    sys.exit(main())
