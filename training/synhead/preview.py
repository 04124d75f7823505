"""Contact sheets of a SynHead folder: per sample the sketch, the mask (in the palette of the manifest's
``label_set``: CelebAMask-HQ for SynHead, seg2cat for SynCat), the RGB input view and the back view."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from backend.labels import colorize, label_set

TILE = 192


def _tile(path: Path, mask: bool = False, colorize=colorize) -> np.ndarray:
    im = Image.open(path)
    if mask:
        im = Image.fromarray(colorize(np.asarray(im)))
    return np.asarray(im.convert("RGB").resize((TILE, TILE), Image.NEAREST if mask else Image.BILINEAR))


def contact_sheet(data_dir: str, out_path: str, count: int = 8, real_dir: str | None = None,
                  sketches_only: bool = False, start: int = 0) -> None:
    """Write a PNG contact sheet of ``count`` samples of ``data_dir`` (from index ``start``).

    With ``sketches_only`` the sheet is a grid of sketches (4 per row); with ``real_dir`` a first row
    shows the (up to 4) real drawings found there (``*.png``, ``*.jpg``) for comparison.

    Raises:
        FileNotFoundError: ``data_dir/manifest.json`` is missing (run ``s3d-data synth`` first).
    """
    d = Path(data_dir)
    mpath = d / "manifest.json"
    if not mpath.is_file():
        raise FileNotFoundError(f"{mpath} not found; run 's3d-data synth --out {data_dir} ...' first")
    manifest = json.loads(mpath.read_text())
    samples = manifest["samples"][start:start + count]
    paint = label_set(manifest.get("label_set", "celebamask-hq-19")).colorize
    if sketches_only:
        tiles = [_tile(d / s["sketch"]) for s in samples]
        real = []
        if real_dir:
            paths = sorted(p for p in Path(real_dir).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
            real = [_tile(p) for p in paths[:4]]
        rows = []
        if real:
            real += [np.full_like(real[0], 255)] * (4 - len(real))
            im = Image.fromarray(np.concatenate(real, 1))
            ImageDraw.Draw(im).text((4, 4), "real (human) drawings", fill=(255, 0, 0))
            rows.append(np.asarray(im))
            rows.append(np.full((6, 4 * TILE, 3), 128, np.uint8))
        for i in range(0, len(tiles), 4):
            chunk = tiles[i:i + 4]
            chunk += [np.full_like(chunk[0], 255)] * (4 - len(chunk))
            im = Image.fromarray(np.concatenate(chunk, 1))
            for j, s in enumerate(samples[i:i + 4]):
                name = "SynCat" if manifest.get("subject") == "cat" else "SynHead"
                ImageDraw.Draw(im).text((j * TILE + 4, 4), f"{name} {s['sketch_style']}", fill=(255, 0, 0))
            rows.append(np.asarray(im))
        Image.fromarray(np.concatenate(rows, 0)).convert("L" if not real_dir else "RGB").save(out_path, optimize=True)
        return
    rows = []
    for s in samples:
        back = next((v["rgb"] for v in s["views"] if v["name"] == "back"), s["views"][0]["rgb"])
        row = np.concatenate([_tile(d / s["sketch"]), _tile(d / s["mask"], True, paint), _tile(d / s["rgb"]),
                              _tile(d / back)], 1)
        im = Image.fromarray(row)
        what = s["params"]["hair"]["style"] if "hair" in s["params"] else _cat_caption(s["params"])
        ImageDraw.Draw(im).text((4, 4), f"{s['id']} {s['sketch_style']} {what}", fill=(255, 0, 0))
        rows.append(np.asarray(im))
    if not rows:
        raise FileNotFoundError(f"{mpath} lists no samples")
    Image.fromarray(np.concatenate(rows, 0)).save(out_path, optimize=True)


def _cat_caption(params: dict) -> str:
    """``archetype [long-haired] pattern`` of a SynCat sample's params (empty when absent)."""
    shape = params.get("shape", {})
    hair = " long-haired" if shape.get("fluff_m", 0) > 0 else ""
    return f"{shape.get('archetype', '')}{hair} {params.get('coat', {}).get('pattern', '')}".strip()
