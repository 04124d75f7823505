"""Cat line drawings: grouped stroke JSON from the input-view label map and the scene's 3D feature curves,
and the three SynCat sketch styles (clean, pencil, doodle).

Stroke groups (docs/contracts.md section 2, ``group``): ``outline`` (the silhouette of face and neck),
``ear`` (ear silhouette and the inner-ear line), ``eye`` (eye outlines), ``pupil``, ``nose`` (the nose pad
triangle), ``mouth`` (philtrum and mouth line), ``whiskers`` (lines from the whisker pads, past the
outline), ``fur`` (cheek tufts on the outline, tabby forehead marks). Label contours are traced with
SynHead's helpers (:mod:`training.synhead.strokes`); the feature curves are projected with the front
orthographic camera (backend/coords.py).

Styles, all drawn by :func:`backend.sketch.raster.rasterize_strokes` where they are strokes:

* ``clean``: the strokes as they are;
* ``doodle``: every stroke simplified to a few straight segments (Douglas-Peucker, 2-5 px), then SynHead's
  rough variant (:func:`training.synhead.sketch_styles.rough_strokes`: jitter, breaks, doubled and dropped
  strokes, variable widths), lines 1.2-1.6x wider;
* ``pencil``: SynHead's XDoG (:func:`training.synhead.sketch_styles.pencil_sketch`) of the RGB render blended
  with a flat grey tone per seg2cat label, plus the whisker strokes (whiskers are not geometry).
"""
from __future__ import annotations

import copy

import cv2
import numpy as np

from backend.coords import BOX_SIZE_M, box_xz_to_pixel
from backend.sketch.raster import rasterize_strokes
from training.synhead.sketch_styles import ink_fraction, pencil_sketch, rough_strokes
from training.synhead.strokes import _add, _contours, _runs

from .paint import EAR, EYES

#: Sketch styles and their sampling weights.
STYLES: dict[str, float] = {"clean": 0.40, "doodle": 0.35, "pencil": 0.25}
PENCIL_INK_RANGE = (0.01, 0.25)
#: Grey tone per seg2cat id for the pencil style (adjacent classes differ).
_TONES = np.array([1.0, 0.78, 0.55, 0.15, 0.1, 0.62], np.float32)


def project(points_m: np.ndarray, size: int) -> np.ndarray:
    """Box-frame points ``(K, 3)`` metres -> front-view pixel coordinates ``(K, 2)`` (column, row) of a
    ``size`` x ``size`` input view (orthographic, backend/coords.py)."""
    half = BOX_SIZE_M / 2
    c, r = box_xz_to_pixel(points_m[:, 0] / half, points_m[:, 2] / half, size)
    return np.stack([c, r], 1)


def _curve_strokes(strokes: list, curves: list[np.ndarray], group: str, size: int, keep_mask: np.ndarray | None,
                   width: float | None = None) -> None:
    for c in curves:
        px = project(c, size)
        if keep_mask is not None:
            ci = np.clip(np.round(px).astype(int), 0, size - 1)
            runs = _runs(px, keep_mask[ci[:, 1], ci[:, 0]], False)
        else:
            runs = [px]
        for r in runs:
            if len(r) >= 2:
                s = {"points": ((r + 0.5) / size).round(5).tolist(), "group": group}
                if width is not None:
                    s["width"] = round(width, 5)
                strokes.append(s)


def _fur_tufts(strokes: list, label: np.ndarray, rng: np.random.Generator) -> None:
    """Short outward spikes on the cheek part of the silhouette (rows between the eyes and the mouth)."""
    size = label.shape[0]
    fg = label > 0
    eye_rows = np.nonzero(label == EYES)[0]
    if not len(eye_rows):
        return
    lo, hi = eye_rows.mean(), eye_rows.mean() + 0.18 * size
    centre = np.argwhere(fg).mean(0)[::-1]
    for c in _contours(fg):
        sel = np.flatnonzero((c[:, 1] > lo) & (c[:, 1] < hi) & (label[c[:, 1], c[:, 0]] != EAR))
        if len(sel) < 10:
            continue
        for i in rng.choice(sel, size=min(len(sel) // 6, int(rng.integers(2, 7))), replace=False):
            p = c[i].astype(float)
            out = p - centre
            out /= np.linalg.norm(out) + 1e-9
            tang = np.array([-out[1], out[0]])
            length = rng.uniform(5, 12)
            tip = p + out * length + tang * rng.uniform(-4, 4)
            pts = np.stack([p - tang * 3, tip, p + tang * 3])
            strokes.append({"points": ((pts + 0.5) / size).round(5).tolist(), "group": "fur"})


def cat_strokes(label: np.ndarray, scene, rng: np.random.Generator) -> dict:
    """Stroke JSON (frame "normalized") of a clean cat line drawing.

    Args:
        label: (R, R) uint8 seg2cat ids of the input view.
        scene: the :class:`training.syncat.scene.CatScene` (its feature curves, box-frame metres).
        rng: randomness for widths, which optional details are drawn and the fur tufts.

    Returns:
        the stroke document; every stroke has ``points``, ``width`` (fraction of the image height), ``group``.
    """
    size = label.shape[0]
    fg = label > 0
    k3 = np.ones((3, 3), np.uint8)
    near = lambda m, it=2: cv2.dilate(m.astype(np.uint8), k3, iterations=it) > 0  # noqa: E731
    strokes: list[dict] = []
    for c in _contours(fg):
        lab_in = label[c[:, 1], c[:, 0]]
        _add(strokes, _runs(c, lab_in == EAR, True), "ear", size)
        _add(strokes, _runs(c, lab_in != EAR, True), "outline", size)
    for c in _contours(label == EYES):
        _add(strokes, [np.concatenate([c, c[:1]])], "eye", size, min_len=4)
    base_w = rng.uniform(1.2, 3.2) / size
    curves = scene.curves
    _curve_strokes(strokes, curves["nose"], "nose", size, near(fg))
    _curve_strokes(strokes, curves["mouth"], "mouth", size, near(fg))
    _curve_strokes(strokes, curves["pupil"], "pupil", size, near(label == EYES, 1),
                   width=base_w * (2.0 if scene.params["coat"]["pupil"] == "slit" else 1.0))
    if rng.random() < 0.8:
        _curve_strokes(strokes, curves["ear"], "ear", size, near(label == EAR, 1))
    whisker = [c for c in curves["whiskers"] if rng.random() < 0.85]
    _curve_strokes(strokes, whisker, "whiskers", size, None)
    if curves["fur"] and rng.random() < 0.7:
        _curve_strokes(strokes, curves["fur"], "fur", size, near(fg))
    if rng.random() < 0.5:
        _fur_tufts(strokes, label, rng)
    for s in strokes:
        if "width" not in s:
            s["width"] = round(base_w * (0.6 if s["group"] in ("whiskers", "fur") else 1.0), 5)
    return {"version": 1, "frame": "normalized", "width": size, "height": size, "strokes": strokes}


def choose_style(rng: np.random.Generator) -> str:
    """Random style name with the :data:`STYLES` weights."""
    names = list(STYLES)
    p = np.array([STYLES[n] for n in names])
    return str(rng.choice(names, p=p / p.sum()))


def doodle_strokes(doc: dict, rng: np.random.Generator) -> dict:
    """A quick, rough doodle of a stroke document: each stroke simplified to a few straight segments
    (Douglas-Peucker with a 2-5 px tolerance at 512 px), then SynHead's rough variant, lines wider."""
    eps = rng.uniform(2.0, 5.0) / 512
    out = copy.copy(doc)
    coarse = []
    for s in doc["strokes"]:
        pts = np.asarray(s["points"], np.float32)
        if len(pts) > 2:
            pts = cv2.approxPolyDP(pts.reshape(-1, 1, 2), eps, False)[:, 0, :]
        coarse.append({**s, "points": pts.round(5).tolist()})
    out["strokes"] = coarse
    rough = rough_strokes(out, rng)
    f = rng.uniform(1.2, 1.6)
    for s in rough["strokes"]:
        s["width"] = round(s["width"] * f, 5)
        if "widths" in s:
            s["widths"] = [round(w * f, 5) for w in s["widths"]]
    return rough


def cat_pencil(rgb: np.ndarray, label: np.ndarray, doc: dict, rng: np.random.Generator) -> np.ndarray:
    """Pencil-style sketch (H, W) uint8: XDoG of the render blended with flat seg2cat tones, plus the
    whisker strokes of ``doc``."""
    a = rng.uniform(0.3, 0.6)
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    toned = (1 - a) * grey + a * _TONES[np.asarray(label)]
    toned8 = (np.clip(toned, 0, 1) * 255 + 0.5).astype(np.uint8)
    img = pencil_sketch(np.repeat(toned8[..., None], 3, 2), rng)
    whiskers = {**doc, "strokes": [s for s in doc["strokes"] if s["group"] == "whiskers"]}
    return np.minimum(img, rasterize_strokes(whiskers, size=img.shape[0]))


def draw_sketch(style: str, doc: dict, rgb: np.ndarray, label: np.ndarray, rng: np.random.Generator):
    """The input-view sketch (R, R) uint8 (255 paper) of ``style`` and the style actually drawn: a pencil
    sketch whose ink fraction is outside :data:`PENCIL_INK_RANGE` falls back to ``doodle``.

    Raises:
        ValueError: an unknown style.
    """
    size = label.shape[0]
    if style not in STYLES:
        raise ValueError(f"unknown cat sketch style {style!r}; known: {', '.join(STYLES)}")
    if style == "pencil":
        img = cat_pencil(rgb, label, doc, rng)
        if PENCIL_INK_RANGE[0] <= ink_fraction(img) <= PENCIL_INK_RANGE[1]:
            return img, style
        style = "doodle"
    if style == "doodle":
        return rasterize_strokes(doodle_strokes(doc, rng), size=size), style
    return rasterize_strokes(doc, size=size), style
