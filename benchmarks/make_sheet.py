"""Contact sheet of finished jobs: one row per output folder of ``s3d generate``.

Columns: the framed sketch, the mask, and the shaded previews front, left, right, back, top, below-chin.

Usage::

    python benchmarks/make_sheet.py out/demo out/demo_long_hair --out docs/img/demo.png [--tile 192]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

COLUMNS = ["sketch_framed.png", "mask_color.png", "views/front.png", "views/left.png", "views/right.png",
           "views/back.png", "views/top.png", "views/below_chin.png"]


def tile(path: Path, size: int) -> np.ndarray:
    """An image fitted into a white ``size`` square (``(size, size, 3)`` uint8); white if missing."""
    from PIL import Image

    canvas = Image.new("RGB", (size, size), (255, 255, 255))
    if path.is_file():
        im = Image.open(path).convert("RGB")
        im.thumbnail((size, size))
        canvas.paste(im, ((size - im.size[0]) // 2, (size - im.size[1]) // 2))
    return np.asarray(canvas)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("jobs", nargs="+", help="output folders of s3d generate")
    p.add_argument("--out", required=True)
    p.add_argument("--tile", type=int, default=192)
    args = p.parse_args(argv)
    from PIL import Image

    rows = [np.hstack([tile(Path(j) / c, args.tile) for c in COLUMNS]) for j in args.jobs]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.vstack(rows)).save(args.out, optimize=True)
    print(f"wrote {args.out} ({len(rows)} rows: {', '.join(COLUMNS)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
