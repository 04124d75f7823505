"""Contact sheets of a SynHead folder: per sample the sketch, the mask (CelebAMask-HQ palette), the RGB
input view and the back view."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from backend.labels import colorize

TILE = 192


def _tile(path: Path, mask: bool = False) -> np.ndarray:
    im = Image.open(path)
    if mask:
        im = Image.fromarray(colorize(np.asarray(im)))
    return np.asarray(im.convert("RGB").resize((TILE, TILE), Image.NEAREST if mask else Image.BILINEAR))


def contact_sheet(data_dir: str, out_path: str, count: int = 8) -> None:
    """Write a PNG contact sheet of the first ``count`` samples of ``data_dir``.

    Raises:
        FileNotFoundError: ``data_dir/manifest.json`` is missing (run ``s3d-data synth`` first).
    """
    d = Path(data_dir)
    mpath = d / "manifest.json"
    if not mpath.is_file():
        raise FileNotFoundError(f"{mpath} not found; run 's3d-data synth --out {data_dir} ...' first")
    samples = json.loads(mpath.read_text())["samples"][:count]
    rows = []
    for s in samples:
        back = next((v["rgb"] for v in s["views"] if v["name"] == "back"), s["views"][0]["rgb"])
        row = np.concatenate([_tile(d / s["sketch"]), _tile(d / s["mask"], True), _tile(d / s["rgb"]),
                              _tile(d / back)], 1)
        im = Image.fromarray(row)
        ImageDraw.Draw(im).text((4, 4), f"{s['id']} {s['sketch_style']} {s['params']['hair']['style']}", fill=(255, 0, 0))
        rows.append(np.asarray(im))
    if not rows:
        raise FileNotFoundError(f"{mpath} lists no samples")
    Image.fromarray(np.concatenate(rows, 0)).save(out_path, optimize=True)
