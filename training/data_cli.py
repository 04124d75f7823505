"""``s3d-data``: SynHead data generation and contact sheets (docs/synhead.md).

    s3d-data synth --out DIR --num N --seed S --views V --workers W
    s3d-data preview DIR --out sheet.png [--count 8]
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def _default_cache_env() -> None:
    """Keep anny's cache inside the repository when the caller did not choose one."""
    repo = Path(__file__).resolve().parent.parent
    os.environ.setdefault("ANNY_CACHE_DIR", str(repo / ".cache" / "anny"))
    os.environ.setdefault("XDG_CACHE_HOME", str(repo / ".cache" / "xdg"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="s3d-data", description="SynHead synthetic sketch / mask / 3D head data")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("synth", help="generate samples (resumable: complete samples are skipped)")
    p.add_argument("--out", required=True, help="output folder (manifest.json and one folder per sample)")
    p.add_argument("--num", type=int, required=True, help="number of samples (seeds S .. S+N-1)")
    p.add_argument("--seed", type=int, default=0, help="first seed (seeds 0..199 are the test split)")
    p.add_argument("--views", type=int, default=4, help="orthographic views per head: 1..4 of front, back, left, right")
    p.add_argument("--workers", type=int, default=1, help="worker processes")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    q = sub.add_parser("preview", help="contact sheet: sketch, mask, RGB, back view per sample")
    q.add_argument("dir", help="a SynHead folder with manifest.json")
    q.add_argument("--out", required=True, help="PNG to write")
    q.add_argument("--count", type=int, default=8, help="number of samples (rows)")
    args = parser.parse_args(argv)
    _default_cache_env()
    if args.cmd == "synth":
        if args.num < 0 or args.seed < 0 or args.workers < 1:
            parser.error("--num and --seed must be >= 0 and --workers >= 1")
        if not 1 <= args.views <= 4:
            parser.error("--views must be between 1 and 4 (front, back, left, right)")
        from training.synhead.writer import synthesise

        m = synthesise(args.out, args.num, args.seed, args.views, args.workers, progress=not args.no_progress)
        print(f"{len(m['samples'])} samples in {args.out}/manifest.json")
        return 0
    if args.cmd == "preview":
        from training.synhead.preview import contact_sheet

        try:
            contact_sheet(args.dir, args.out, args.count)
        except FileNotFoundError as e:
            print(f"s3d-data preview: {e}", file=sys.stderr)
            return 2
        print(f"wrote {args.out}")
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
