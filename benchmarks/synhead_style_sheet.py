"""Contact sheet and speed of the seven SynHead sketch styles (training/synhead/drawing_styles.py).

One row per style: four SynHead heads drawn in it (each seeded by its seed and the style's name, as
``s3d-eval --sketch-styles`` draws them) and, beside them, the real drawings of the kind the style imitates
(read from ``--real`` at run time, never copied into the repository). A last row shows the portrait
style's raw scans before the backend's intake next to the raw real pencil portraits. ``--time N`` instead
measures each style's drawing time over N heads (median and 90th percentile, milliseconds).

    python benchmarks/synhead_style_sheet.py --data /work/data/synhead_val200 \\
        --real ../shared/dev-inputs/sketches --out docs/img/synhead_styles.png
    OMP_NUM_THREADS=1 python benchmarks/synhead_style_sheet.py --data /work/data/synhead_val200 --time 30
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

#: Real drawings (file stems in ``--real``) of the kind each style imitates; the closest where none is.
REAL_OF_STYLE: dict[str, tuple[str, ...]] = {
    "clean": ("dfdj_hand_1",),
    "rough": ("dfdj_hand_4", "deepps_syn_3"),
    "pencil": (),
    "portrait": ("cufs_student_training_30", "cufs_student_training_5"),
    "hatched": ("dfdj_hand_3", "deepps_syn_5"),
    "marker": ("dfdj_hand_3",),
    "strands": ("dfdj_hand_5", "deepps_syn_3"),
}
LABEL_W = 120


def _head(root: Path, entry: dict) -> tuple[dict, np.ndarray, np.ndarray]:
    d = root / entry["id"]
    return (json.loads((d / "strokes.json").read_text()), np.asarray(Image.open(d / "rgb.png").convert("RGB")),
            np.asarray(Image.open(d / "mask.png")))


def _square(img: np.ndarray, tile: int) -> np.ndarray:
    """Grey ``img`` letterboxed (white) into a ``tile`` square, area-resized."""
    h, w = img.shape
    s = tile / max(h, w)
    small = cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    out = np.full((tile, tile), 255, np.uint8)
    y, x = (tile - small.shape[0]) // 2, (tile - small.shape[1]) // 2
    out[y:y + small.shape[0], x:x + small.shape[1]] = small
    return out


def _caption(tile: np.ndarray, text: str) -> np.ndarray:
    t = tile.copy()
    cv2.putText(t, text, (3, t.shape[0] - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.33, 0, 1, cv2.LINE_AA)
    return t


def pick_heads(root: Path, n: int, long_hair: bool | None = None) -> list[dict]:
    """The first ``n`` manifest entries (with ``long_hair`` set: only those whose mask has / lacks hair
    below the jaw, :func:`training.synhead.drawing_styles.has_long_hair`)."""
    from training.synhead.drawing_styles import has_long_hair

    out = []
    for e in json.loads((root / "manifest.json").read_text())["samples"]:
        if long_hair is not None and has_long_hair(np.asarray(Image.open(root / e["mask"]))) != long_hair:
            continue
        out.append(e)
        if len(out) == n:
            break
    return out


def sheet(root: Path, real: Path | None, tile: int = 150) -> np.ndarray:
    """The contact sheet, ``(rows * tile, LABEL_W + 6 * tile)`` uint8 grey."""
    from training.synhead.drawing_styles import STYLE_FUNCTIONS, draw_style, portrait_scan, style_rng

    heads = pick_heads(root, 2, True) + pick_heads(root, 2, False)
    long_heads = pick_heads(root, 4, True)
    rows = []

    def label(text: str, sub: str = "") -> np.ndarray:
        lab = np.full((tile, LABEL_W), 255, np.uint8)
        cv2.putText(lab, text, (6, tile // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.55, 0, 1, cv2.LINE_AA)
        if sub:
            cv2.putText(lab, sub, (6, tile // 2 + 18), cv2.FONT_HERSHEY_SIMPLEX, 0.33, 0, 1, cv2.LINE_AA)
        return lab

    def real_tiles(stems: tuple[str, ...], raw: bool = False) -> list[np.ndarray]:
        from backend.sketch.intake import load_sketch

        tiles = []
        for stem in stems[:2]:
            found = sorted(real.glob(stem + ".*")) if real else []
            if not found:
                continue
            img = np.asarray(Image.open(found[0]).convert("L")) if raw else load_sketch(found[0]).image
            tiles.append(_caption(_square(img, tile), ("real raw " if raw else "real ") + stem))
        while len(tiles) < 2:
            tiles.append(_caption(np.full((tile, tile), 255, np.uint8), "(no real one)" if not tiles else ""))
        return tiles

    for name in STYLE_FUNCTIONS:
        cells = []
        for e in (long_heads if name == "strands" else heads):
            doc, rgb, lab = _head(root, e)
            cells.append(_caption(_square(draw_style(name, doc, rgb, lab, style_rng(e["seed"], name)), tile), e["id"]))
        sep = np.full((tile, 4), 0, np.uint8)
        rows.append(np.concatenate([label(name, "synthetic | real")] + cells + [sep] + real_tiles(REAL_OF_STYLE[name]), 1))
    cells = []
    for e in heads:
        _, rgb, lab = _head(root, e)
        jpg, _, _ = portrait_scan(rgb, lab, style_rng(e["seed"], "portrait"))
        cells.append(_caption(_square(cv2.imdecode(np.frombuffer(jpg, np.uint8), cv2.IMREAD_GRAYSCALE), tile), "scan"))
    rows.append(np.concatenate([label("portrait", "raw scan, pre-intake")] + cells + [np.full((tile, 4), 0, np.uint8)]
                               + real_tiles(REAL_OF_STYLE["portrait"], raw=True), 1))
    return np.concatenate(rows, 0)


def timing(root: Path, n: int) -> dict[str, dict[str, float]]:
    """Median and 90th percentile of each style's wall-clock drawing time (ms) and the median CPU time of
    the process (ms; less sensitive to other processes on a busy machine) over the first ``n`` heads of
    ``root`` (one warm-up drawing per style first)."""
    from training.synhead.drawing_styles import STYLE_FUNCTIONS, draw_style, style_rng

    heads = [_head(root, e) + (e["seed"],) for e in pick_heads(root, n)]
    out = {}
    for name in STYLE_FUNCTIONS:
        doc, rgb, lab, seed = heads[0]
        draw_style(name, doc, rgb, lab, style_rng(seed, name))
        ms, cpu = [], []
        for doc, rgb, lab, seed in heads:
            t, c = time.perf_counter(), time.process_time()
            draw_style(name, doc, rgb, lab, style_rng(seed, name))
            ms.append(1000 * (time.perf_counter() - t))
            cpu.append(1000 * (time.process_time() - c))
        out[name] = {"median_ms": round(float(np.median(ms)), 1), "p90_ms": round(float(np.percentile(ms, 90)), 1),
                     "median_cpu_ms": round(float(np.median(cpu)), 1), "heads": len(ms)}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, type=Path, help="SynHead folder (its first heads are drawn)")
    ap.add_argument("--real", type=Path, help="folder of real drawings (REAL_OF_STYLE names them)")
    ap.add_argument("--out", type=Path, help="contact sheet PNG")
    ap.add_argument("--tile", type=int, default=150)
    ap.add_argument("--time", type=int, metavar="N", help="measure each style's drawing time over N heads instead")
    ap.add_argument("--cv-threads", type=int, default=1, help="OpenCV threads (1: one core, as a data worker)")
    args = ap.parse_args(argv)
    cv2.setNumThreads(args.cv_threads)
    if args.time:
        res = timing(args.data, args.time)
        print("| style | median ms | p90 ms | median CPU ms |\n|---|---|---|---|")
        for k, v in res.items():
            print(f"| {k} | {v['median_ms']} | {v['p90_ms']} | {v['median_cpu_ms']} |")
        return 0
    if not args.out:
        ap.error("--out is needed for the contact sheet (or --time N)")
    img = sheet(args.data, args.real, args.tile)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(args.out, optimize=True)
    print(f"{args.out}: {img.shape[1]}x{img.shape[0]}, {args.out.stat().st_size // 1024} KB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
