"""Contact sheet of finished jobs: one row per output folder of ``s3d generate``.

Columns: the framed sketch, the mask, the shaded previews front, left, right, back, top, below-chin, and
with ``--blender`` the mesh as the Blender add-on imports it (``JOB/blender.png``).

Usage::

    python benchmarks/make_sheet.py out/demo out/demo_long_hair --out docs/img/demo.png [--tile 192]
        [--blender] [--blender-size 256]

``--blender`` renders each job folder with ``scripts/render_addon_head.py`` (bpy in a subprocess, the add-on's
``import_job_folder``, Workbench with the ``Col`` vertex colours, three-quarter front view) into
``JOB/blender.png``, unless that file is already there and newer than the job's ``mesh.ply``. Workbench
needs an OpenGL context (Mesa EGL works headless). Exit 1 when a render fails (its stderr tail is printed).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RENDER_SCRIPT = ROOT / "scripts" / "render_addon_head.py"
COLUMNS = ["sketch_framed.png", "mask_color.png", "views/front.png", "views/left.png", "views/right.png",
           "views/back.png", "views/top.png", "views/below_chin.png"]
BLENDER_COLUMN = "blender.png"


def tile(path: Path, size: int) -> np.ndarray:
    """An image fitted into a white ``size`` square (``(size, size, 3)`` uint8); white if missing."""
    from PIL import Image

    canvas = Image.new("RGB", (size, size), (255, 255, 255))
    if path.is_file():
        im = Image.open(path).convert("RGB")
        im.thumbnail((size, size))
        canvas.paste(im, ((size - im.size[0]) // 2, (size - im.size[1]) // 2))
    return np.asarray(canvas)


def render_blender(job: Path, size: int = 256, timeout: float = 600.0) -> Path:
    """``JOB/blender.png``: the job's mesh imported by the add-on and rendered with Workbench (``size`` px).

    Kept when it exists and is not older than ``JOB/mesh.ply``; otherwise rendered by
    ``scripts/render_addon_head.py JOB JOB/blender.png --size SIZE`` in a subprocess (bpy is not imported here).

    Raises:
        FileNotFoundError: the job folder has no ``mesh.ply``.
        RuntimeError: the render failed or timed out (the message has its stderr tail).
    """
    ply, out = job / "mesh.ply", job / BLENDER_COLUMN
    if not ply.is_file():
        raise FileNotFoundError(f"{job} has no mesh.ply")
    if out.is_file() and out.stat().st_mtime >= ply.stat().st_mtime:
        return out
    cmd = [sys.executable, str(RENDER_SCRIPT), str(job), str(out), "--size", str(size), "--engine", "WORKBENCH"]
    try:
        r = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                           env=dict(os.environ))
    except subprocess.TimeoutExpired as e:
        raise RuntimeError(f"Blender render of {job} timed out after {timeout:.0f} s") from e
    if r.returncode != 0 or not out.is_file():
        tail = (r.stderr.strip() or r.stdout.strip())[-800:]
        raise RuntimeError(f"Blender render of {job} failed (exit {r.returncode}): {tail}")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("jobs", nargs="+", help="output folders of s3d generate")
    p.add_argument("--out", required=True)
    p.add_argument("--tile", type=int, default=192)
    p.add_argument("--blender", action="store_true",
                   help="add the column 'Blender': the mesh imported by the add-on (renders JOB/blender.png if needed)")
    p.add_argument("--blender-size", type=int, default=256, help="pixels a side of the Blender render (256)")
    args = p.parse_args(argv)
    from PIL import Image

    columns = COLUMNS + ([BLENDER_COLUMN] if args.blender else [])
    if args.blender:
        for j in args.jobs:
            try:
                render_blender(Path(j), args.blender_size)
            except (FileNotFoundError, RuntimeError) as e:
                print(f"make_sheet: error: {e}", file=sys.stderr)
                return 1
    rows = [np.hstack([tile(Path(j) / c, args.tile) for c in columns]) for j in args.jobs]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.vstack(rows)).save(args.out, optimize=True)
    print(f"wrote {args.out} ({len(rows)} rows: {', '.join(columns)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
