"""SynHead drawing styles that imitate the real drawings the sketch network fails on, and the registry of
all seven styles by name.

Every style is a pure function ``(doc, rgb, label, rng) -> (S, S) uint8`` (255 paper, 0 ink) of the
head's clean stroke document (normalised frame, docs/contracts.md section 2), its front render ``rgb``
``(S, S, 3)`` uint8, its label map ``label`` ``(S, S)`` uint8 ids (backend/labels.py) and a
``numpy.random.Generator``; ``S`` is the label map's side (SynHead writes 512). The same generator
state gives the same picture. Sizes below are given as fractions of ``S`` or as pixels at 512.

* ``portrait``: a tonal graphite portrait scanned on grey paper (the CUFS student drawings): tone from
  the render's luminance, hatching, hair strokes, paper grain, vignette, tilt, a margin note, JPEG;
  then the backend's own intake (:func:`backend.sketch.intake.load_sketch`) and the crop back onto
  the head's square, so the network trains on what it sees at inference.
* ``hatched``: clean or rough strokes with the hair filled by scribbles or hatching along its flow.
* ``marker``: thick round-ended marker lines (3-4x the stroke width), short strokes partly dropped.
* ``strands``: long hair drawn as 5-12 long strands following the hair region down to its ends instead
  of the hair outline; heads whose hair does not reach below the jaw get ``hatched`` instead.

:data:`STYLE_FUNCTIONS` maps every style name (the three of :mod:`.sketch_styles` too) to such a
function; :func:`draw_style` draws one by name. The writer, the trainer and ``s3d-eval`` use it.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

from backend.labels import LABEL_IDS, NUM_CLASSES
from backend.sketch.raster import rasterize_strokes

from .sketch_styles import pencil_sketch, rough_strokes

HAIR = LABEL_IDS["hair"]
SKIN = LABEL_IDS["skin"]
CLOTH = LABEL_IDS["cloth"]
#: Parts a portrait shades lightly (skin tones).
_SKIN_LIKE = [LABEL_IDS[n] for n in ("skin", "nose", "l_ear", "r_ear", "ear_r", "neck", "neck_l")]
#: The styles added for real drawings (issue 37), in the order they are documented.
NEW_STYLES: tuple[str, ...] = ("portrait", "hatched", "marker", "strands")
#: Styles drawn from the front render (the others use only the strokes and the label map; ``rgb`` may be
#: None for them).
NEEDS_RGB: frozenset[str] = frozenset({"pencil", "portrait"})
#: Hair this far (fraction of the side) below the lowest skin row makes a head long-haired (``strands``).
LONG_HAIR_BELOW_JAW = 0.03

StyleFn = Callable[[dict, np.ndarray, np.ndarray, np.random.Generator], np.ndarray]


# ---- shared helpers --------------------------------------------------------------------------------

def _side(label: np.ndarray) -> int:
    lab = np.asarray(label)
    if lab.ndim != 2 or lab.shape[0] != lab.shape[1]:
        raise ValueError(f"label map must be a square (S, S) array, not shape {lab.shape}")
    return int(lab.shape[0])


def _rgb_at(rgb: np.ndarray, size: int) -> np.ndarray:
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"rgb must be (H, W, 3), not shape {rgb.shape}")
    if rgb.shape[0] != size:
        rgb = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA)
    return rgb


def _base_strokes(doc: dict, rng: np.random.Generator, rough_p: float = 0.5) -> dict:
    """The clean document, or with probability ``rough_p`` its rough copy (:func:`rough_strokes`)."""
    return rough_strokes(doc, rng) if rng.random() < rough_p else doc


def _without_groups(doc: dict, groups: tuple[str, ...]) -> dict:
    d = copy.copy(doc)
    d["strokes"] = [s for s in doc.get("strokes", []) if s.get("group") not in groups]
    return d


def _crown(hair: np.ndarray) -> np.ndarray:
    """A point ``(x, y)`` pixels near the top centre of a non-empty hair region: the hair's flow origin."""
    ys, xs = np.nonzero(hair)
    top = np.percentile(ys, 3)
    return np.array([float(np.median(xs[ys <= np.percentile(ys, 20)])), float(top)])


def _flow_dir(points: np.ndarray, crown: np.ndarray, face_x: float) -> np.ndarray:
    """Unit directions ``(n, 2)`` of the hair's flow at ``points (n, 2)``: away from the crown, bent
    downwards at the sides (hair falls)."""
    d = points - crown
    d[:, 1] = np.abs(d[:, 1]) * 1.3 + 1e-3
    d[:, 0] += np.sign(points[:, 0] - face_x) * 2.0
    return d / np.linalg.norm(d, axis=1, keepdims=True)


def _multiscale_noise(shape: tuple[int, int], rng: np.random.Generator, scales: tuple[int, ...],
                      amps: tuple[float, ...]) -> np.ndarray:
    """Sum of Gaussian noise fields of feature size ``scales`` pixels (generated small and resized,
    bicubic) with standard deviations ``amps``: ``shape`` float32."""
    h, w = shape
    out = np.zeros(shape, np.float32)
    for sc, a in zip(scales, amps):
        sh, sw = max(2, h // sc), max(2, w // sc)
        n = rng.standard_normal((sh, sw), dtype=np.float32)
        if (sh, sw) != (h, w):
            n = cv2.resize(n, (w, h), interpolation=cv2.INTER_CUBIC)
        out += a * n
    return out


# ---- portrait --------------------------------------------------------------------------------------

def _hatch(shape: tuple[int, int], angle: float, spacing: float, width: float) -> np.ndarray:
    """Parallel lines at ``angle`` radians, ``spacing`` px apart, ``width`` px wide: ``shape`` float32 in
    [0, 1] (1 on a line, anti-aliased)."""
    h, w = shape
    y = np.arange(h, dtype=np.float32)[:, None] * math.sin(angle)
    x = np.arange(w, dtype=np.float32)[None, :] * math.cos(angle)
    u = (x + y) % spacing
    dist = np.minimum(u, spacing - u)
    return np.clip(width / 2 + 0.5 - dist, 0.0, 1.0)


def _hair_strokes(layer: np.ndarray, hair: np.ndarray, rng: np.random.Generator, density: float,
                  length: tuple[float, float], ink: tuple[float, float], width: int,
                  wiggle: float = 0.15) -> None:
    """Draw short curved strokes along the hair's flow into ``layer`` (float32 darkness, max-combined);
    ``density`` strokes per hair pixel, lengths in pixels."""
    n = int(hair.sum() * density)
    if n <= 0:
        return
    ys, xs = np.nonzero(hair)
    crown = _crown(hair)
    face_x = float(np.median(xs))
    pick = rng.integers(0, len(xs), size=n)
    p0 = np.stack([xs[pick], ys[pick]], 1).astype(np.float64)
    d = _flow_dir(p0, crown, face_x)
    lens = rng.uniform(*length, size=n)
    bend = rng.normal(0, wiggle, size=n)
    t = np.linspace(0, 1, 5)[None, :, None]
    nrm = np.stack([-d[:, 1], d[:, 0]], 1)
    pts = p0[:, None] + d[:, None] * (lens[:, None, None] * t) \
        + nrm[:, None] * (bend[:, None, None] * lens[:, None, None] * (t - t ** 2) * 2)
    levels = rng.uniform(*ink, size=n)
    # a few darkness levels, one polylines call each (fast)
    q = np.round(levels * 4) / 4
    fixed = np.round(pts * 8).astype(np.int32)  # 3 fractional bits (cv2 shift)
    for v in np.unique(q):
        lines = list(fixed[q == v])
        tmp = np.zeros_like(layer)
        cv2.polylines(tmp, lines, False, float(v), width, cv2.LINE_AA, 3)
        np.maximum(layer, tmp, out=layer)


def _portrait_darkness(rgb: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Graphite darkness ``(S, S)`` float32 in [0, 1] (1 = darkest graphite) of the head's square."""
    s = label.shape[0]
    k = s / 512.0
    g = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    dark0 = 1.0 - g
    # an artist's tone per part, whatever the render's colours: light skin shading, dark hair and brows;
    # the render's shading (its variation about the part's mean) is kept with a contrast factor
    n_lab = NUM_CLASSES
    area = np.bincount(label.ravel(), minlength=n_lab).astype(np.float64)
    mean = np.bincount(label.ravel(), weights=dark0.ravel(), minlength=n_lab) / np.maximum(area, 1)
    level = np.zeros(n_lab, np.float32)
    level[_SKIN_LIKE] = rng.uniform(0.02, 0.15)
    hair_dark = float(mean[HAIR]) if area[HAIR] else 0.5
    level[[HAIR, LABEL_IDS["hat"]]] = np.clip(hair_dark * rng.uniform(0.6, 1.0) + 0.05, 0.2, 0.6)
    level[[LABEL_IDS["l_brow"], LABEL_IDS["r_brow"]]] = rng.uniform(0.45, 0.8)
    level[[LABEL_IDS["l_eye"], LABEL_IDS["r_eye"]]] = rng.uniform(0.25, 0.5)
    level[[LABEL_IDS["u_lip"], LABEL_IDS["l_lip"]]] = rng.uniform(0.15, 0.4)
    level[LABEL_IDS["mouth"]] = rng.uniform(0.4, 0.7)
    level[LABEL_IDS["eye_g"]] = rng.uniform(0.2, 0.5)
    level[CLOTH] = rng.uniform(0.0, 0.15)
    contrast = np.full(n_lab, rng.uniform(0.6, 1.3), np.float32)
    contrast[0] = 0.0
    dark = level[label] + contrast[label] * (dark0 - mean[label].astype(np.float32))
    dark = np.clip(dark, 0, 1) ** rng.uniform(0.8, 1.3)
    # soft quantisation: a few graphite levels, blurred
    n = int(rng.integers(3, 7))
    dark = cv2.GaussianBlur(np.round(dark * n) / n, (0, 0), rng.uniform(1.5, 3.5) * k)
    # hatching in the darker tones (a second direction in the darkest), broken by paper tooth
    ang = rng.uniform(0.3, 1.2) * rng.choice([-1, 1])
    sp = rng.uniform(3.0, 6.0) * k
    h1 = _hatch(dark.shape, ang, sp, max(1.0, rng.uniform(0.8, 1.6) * k))
    h2 = _hatch(dark.shape, ang + rng.uniform(0.9, 1.6), sp * rng.uniform(0.9, 1.3), max(1.0, k))
    t1, t2 = rng.uniform(0.2, 0.35), rng.uniform(0.4, 0.55)
    hatch_w = rng.uniform(0.3, 0.7)
    dark = dark * (1 - hatch_w) + hatch_w * dark * np.where(dark > t1, 0.4 + 1.2 * h1, 1.0)
    dark = np.where(dark > t2, np.maximum(dark, h2 * rng.uniform(0.4, 0.7)), dark)
    # outlines of the parts (label boundaries), broken in places
    edge = cv2.morphologyEx(label, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    edge = edge.astype(np.float32)
    if rng.random() < 0.5:
        edge = cv2.dilate(edge, np.ones((2, 2), np.uint8))
    breaks = _multiscale_noise(edge.shape, rng, (int(24 * k) or 1,), (1.0,)) > rng.uniform(-0.8, 0.0)
    dark = np.maximum(dark, edge * breaks * rng.uniform(0.45, 0.85))
    # hair: many short strokes along its flow
    hair = label == HAIR
    if hair.any():
        layer = np.zeros(dark.shape, np.float32)
        _hair_strokes(layer, hair, rng, rng.uniform(0.02, 0.06), (12 * k, 45 * k), (0.5, 1.0),
                      max(1, round(rng.uniform(0.8, 1.8) * k)))
        hair_grown = cv2.dilate(hair.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        dark = np.where(hair_grown, np.maximum(dark, layer), dark)
    # graphite grain: the paper's tooth breaks the tone
    tooth = _multiscale_noise(dark.shape, rng, (1, 3), (rng.uniform(0.03, 0.1), rng.uniform(0.03, 0.1)))
    dark = dark * np.clip(1.0 + tooth, 0.5, 1.5)
    dark = cv2.GaussianBlur(dark, (0, 0), rng.uniform(0.5, 1.1) * k)
    return np.clip(dark, 0, 1).astype(np.float32)


_NOTES = ("{n}", "No. {n}", "#{n}", "{n}/{m}", "A{n}", "{n} - {m}", "{n}.{m}.20{y:02d}")


def _margin_note(sheet: np.ndarray, rng: np.random.Generator, box: tuple[float, float, float, float]) -> None:
    """Write a short handwritten-looking number (cv2 Hershey script font) in the sheet's top or bottom
    margin, outside the head's box ``(x0, y0, x1, y1)`` where there is room; ``sheet`` float32 grey."""
    h, w = sheet.shape
    text = str(rng.choice(_NOTES)).format(n=int(rng.integers(1, 400)), m=int(rng.integers(1, 99)),
                                           y=int(rng.integers(0, 26)))
    font = int(rng.choice([cv2.FONT_HERSHEY_SCRIPT_SIMPLEX, cv2.FONT_HERSHEY_SCRIPT_COMPLEX,
                           cv2.FONT_HERSHEY_SIMPLEX | cv2.FONT_ITALIC]))
    scale = rng.uniform(0.025, 0.05) * h / 22.0
    thick = max(1, round(rng.uniform(0.6, 1.6) * h / 600))
    (tw, th), _ = cv2.getTextSize(text, font, scale, thick)
    top_room, bottom_room = box[1], h - box[3]
    if max(top_room, bottom_room) >= th + 6:
        if top_room >= bottom_room:
            y = int(rng.uniform(th + 2, max(th + 3, top_room - 2)))
        else:
            y = int(rng.uniform(box[3] + th + 2, max(box[3] + th + 3, h - 3)))
    else:  # no margin: the square's top corner (background in SynHead framing)
        y = int(rng.uniform(th + 2, max(th + 3, 0.08 * h)))
    x = int(rng.uniform(0.02 * w, max(0.02 * w + 1, w - tw - 0.02 * w)))
    cv2.putText(sheet, text, (x, y), font, scale, float(rng.uniform(0.25, 0.55)), thick, cv2.LINE_AA)


def portrait_scan(rgb: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> tuple[bytes, np.ndarray, np.ndarray]:
    """The raw synthetic scan of a tonal graphite portrait (before the backend's intake).

    Drawing (in the head's ``S x S`` square): :func:`_portrait_darkness`, an artist's tone per part (light
    skin shading 0.02-0.15 whatever the render's skin colour, hair 0.2-0.6 by its colour, darker brows,
    eyes, lips and mouth, light clothes) plus the render's shading about each part's mean (contrast
    0.6-1.3), softly quantised to 3-6 levels (Gaussian blur 1.5-3.5 px at 512); hatching (3-6 px spacing)
    in the darker tones and cross-hatching in the darkest; broken label-boundary outlines; 0.02-0.06
    strokes per hair pixel along the hair's flow; paper-tooth noise; a 0.5-1.1 px blur (soft edges).

    Scan: the square is scaled by 0.62-0.92, tilted by up to 3 degrees and placed on a portrait sheet
    (height 1.2-1.45, width 0.95-1.1 of the scaled square's side); paper level 0.78-0.94 with grain at
    1, 4 and 32 px and a vignette of 4-18 %; with probability 0.6 a margin note (:func:`_margin_note`);
    JPEG at quality 45-90.

    Args:
        rgb: ``(S, S, 3)`` uint8 front render (resized to the label map's side if it differs).
        label: ``(S, S)`` uint8 label ids.

    Returns:
        ``(jpeg bytes of the (H, W) grey sheet, m (2, 3) float64 affine map from the head's square to the
        sheet in pixels, darkness (S, S) float32 in [0, 1] of the drawing before the scan)``.
    """
    s = _side(label)
    label = np.asarray(label)
    rgb = _rgb_at(rgb, s)
    dark = _portrait_darkness(rgb, label, rng)
    f = rng.uniform(0.62, 0.92)
    side = s * f
    sh = int(round(side * rng.uniform(1.2, 1.45)))
    sw = int(round(side * rng.uniform(0.95, 1.1)))
    ang = rng.uniform(-3.0, 3.0)
    cx = sw / 2 + rng.uniform(-0.03, 0.03) * sw
    cy = sh * rng.uniform(0.45, 0.56)
    m = cv2.getRotationMatrix2D((s / 2, s / 2), ang, f)
    m[:, 2] += (cx - s / 2, cy - s / 2)
    sheet_dark = cv2.warpAffine(dark, m, (sw, sh), flags=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
    paper = rng.uniform(0.78, 0.94)
    grain = _multiscale_noise((sh, sw), rng, (1, 4, 32), (rng.uniform(0.008, 0.025), rng.uniform(0.005, 0.015),
                                                           rng.uniform(0.005, 0.02)))
    y, x = np.ogrid[0:sh, 0:sw]
    vx, vy = sw * rng.uniform(0.4, 0.6), sh * rng.uniform(0.4, 0.6)
    r2 = ((x - vx) / (0.5 * sw)) ** 2 + ((y - vy) / (0.5 * sh)) ** 2
    vignette = 1.0 - rng.uniform(0.04, 0.18) * np.clip(r2, 0, 2).astype(np.float32) / 2
    ink_max = rng.uniform(0.75, 0.92)
    sheet = (paper + grain) * vignette * (1.0 - ink_max * sheet_dark)
    if rng.random() < 0.6:
        corners = cv2.transform(np.array([[[0, 0], [s, 0], [0, s], [s, s]]], np.float32), m)[0]
        x0, y0 = corners.min(0)
        x1, y1 = corners.max(0)
        # the note goes on the paper: it darkens by multiplication like graphite
        note = np.zeros_like(sheet)
        _margin_note(note, rng, (x0 + 0.15 * side, y0 + 0.1 * side, x1 - 0.15 * side, y1 - 0.05 * side))
        sheet = sheet * (1.0 - note)
    u8 = np.clip(sheet * 255.0 + 0.5, 0, 255).astype(np.uint8)
    _, jpg = cv2.imencode(".jpg", u8, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(45, 91))])
    return jpg.tobytes(), m, dark


def portrait_sketch(doc: dict, rgb: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A tonal graphite portrait on textured grey paper, scanned (:func:`portrait_scan`), then put through
    the backend's intake exactly as an upload is: the JPEG bytes go to
    :func:`backend.sketch.intake.load_sketch` (paper clean-up of :mod:`backend.sketch.paper`, level
    normalisation), and the result is warped back onto the head's square (bilinear, white outside), as
    the sketch network sees a framed 512 x 512 input; the label map stays aligned. ``doc`` is not used.

    Returns ``(S, S)`` uint8, 255 paper, 0 ink. If intake finds the scan blank the drawing before the
    scan is returned. About 200 ms at 512 on the 2-core dev machine, most of it the backend's clean-up.
    """
    from backend.sketch.intake import IntakeError, load_sketch

    s = _side(label)
    jpg, m, dark = portrait_scan(rgb, label, rng)
    try:
        scanned = load_sketch(jpg).image
    except IntakeError:
        return np.clip(255.0 * (1.0 - dark) + 0.5, 0, 255).astype(np.uint8)
    return cv2.warpAffine(scanned, m, (s, s), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=255)


# ---- hatched ---------------------------------------------------------------------------------------

def _ink_budget(hair: np.ndarray, rng: np.random.Generator, width: int) -> float:
    """Total stroke length (pixels) that covers a fraction 0.25-0.5 of the hair's pixels at ``width``
    (before overlaps): dense, but with paper left between the strokes, as in hand-scribbled hair."""
    return float(rng.uniform(0.25, 0.5) * hair.sum() / max(width, 1))


def _scribbles(layer: np.ndarray, hair: np.ndarray, rng: np.random.Generator, k: float, ink: int, width: int) -> None:
    """Loopy scribble strokes (random walks with momentum, 10-40 steps of 5-14 px at 512) over the hair,
    up to the :func:`_ink_budget`."""
    ys, xs = np.nonzero(hair)
    budget = _ink_budget(hair, rng, width)
    lines = []
    while budget > 0 and len(lines) < 2000:
        m = int(rng.integers(10, 41))
        head = rng.uniform(0, 2 * math.pi)
        turn = rng.normal(0, rng.uniform(0.3, 1.0), size=m).cumsum() * 0.5
        steps = rng.uniform(5, 14, size=m) * k
        ang = head + turn
        p = np.stack([np.cos(ang) * steps, np.sin(ang) * steps], 1).cumsum(0)
        i = int(rng.integers(len(xs)))
        p += (xs[i], ys[i])
        lines.append(np.round(p * 8).astype(np.int32))
        budget -= float(steps.sum())
    cv2.polylines(layer, lines, False, ink, width, cv2.LINE_AA, 3)


def _zigzag_hatching(layer: np.ndarray, hair: np.ndarray, rng: np.random.Generator, k: float, ink: int,
                     width: int) -> None:
    """Patches of parallel strokes along the hair's flow (each patch 4-10 strokes 18-55 px long at 512,
    2.5-5 px plus the stroke width apart), sometimes joined into a zig-zag, up to the :func:`_ink_budget`."""
    ys, xs = np.nonzero(hair)
    crown = _crown(hair)
    face_x = float(np.median(xs))
    budget = _ink_budget(hair, rng, width)
    lines = []
    while budget > 0 and len(lines) < 4000:
        i = int(rng.integers(len(xs)))
        c = np.array([xs[i], ys[i]], np.float64)
        d = _flow_dir(c[None], crown, face_x)[0] + rng.normal(0, 0.15, 2)
        d /= np.linalg.norm(d)
        nrm = np.array([-d[1], d[0]])
        cnt = int(rng.integers(4, 11))
        gap = rng.uniform(2.5, 5) * k + width
        half = rng.uniform(9, 28) * k
        zig = rng.random() < 0.4
        pts = []
        for j in range(cnt):
            o = c + nrm * gap * (j - cnt / 2)
            a, b = o - d * half * rng.uniform(0.8, 1.2), o + d * half * rng.uniform(0.8, 1.2)
            if zig:
                pts += [a, b] if j % 2 == 0 else [b, a]
            else:
                lines.append(np.round(np.stack([a, b]) * 8).astype(np.int32))
        if zig:
            lines.append(np.round(np.array(pts) * 8).astype(np.int32))
        budget -= cnt * 2 * half
    cv2.polylines(layer, lines, False, ink, width, cv2.LINE_AA, 3)


def hatched_sketch(doc: dict, rgb: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Clean (50 %) or rough strokes with the hair (label ``hair``) filled by dense scribbles (loopy
    random walks, :func:`_scribbles`) or by patches of parallel / zig-zag hatching along the hair's flow
    (:func:`_zigzag_hatching`), half each. The fill is drawn with ``cv2.polylines`` (anti-aliased, 1-3 px
    at 512, ink 0-60) and clipped to the hair grown by 2-6 px (a few strokes overshoot, as by hand); the
    hair-flow strokes of the document are left out half the time. ``rgb`` is not used.

    Returns ``(S, S)`` uint8, 255 paper, 0 ink; without hair, the strokes alone.
    """
    s = _side(label)
    k = s / 512.0
    base = _base_strokes(doc, rng)
    if rng.random() < 0.5:
        base = _without_groups(base, ("hair_flow",))
    img = rasterize_strokes(base, size=s)
    hair = np.asarray(label) == HAIR
    if not hair.any():
        return img
    layer = np.full((s, s), 255, np.uint8)
    ink = int(rng.integers(0, 61))
    width = max(1, round(rng.uniform(1.3, 3.2) * k))
    if rng.random() < 0.5:
        _scribbles(layer, hair, rng, k, ink, width)
    else:
        _zigzag_hatching(layer, hair, rng, k, ink, width)
    g = max(1, round(rng.uniform(2, 6) * k))
    grown = cv2.dilate(hair.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * g + 1, 2 * g + 1)))
    layer[grown == 0] = 255
    return np.minimum(img, layer)


# ---- marker ----------------------------------------------------------------------------------------

def _arc_length(pts: np.ndarray) -> float:
    return float(np.linalg.norm(np.diff(pts, axis=0), axis=1).sum()) if len(pts) > 1 else 0.0


def marker_sketch(doc: dict, rgb: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Thick marker lines from the stroke document: every width times one factor in [3, 4] (times
    0.85-1.15 per stroke), strokes shorter than 4 % of the side dropped with probability 0.5 and others
    (not the face outline) with 0.05, points simplified (Douglas-Peucker, 0.3 % of the side), a slow
    +-15 % width swell along each stroke, ink blobs (a dot 1.1-1.5x the width) at 30 % of the stroke
    ends. Rasterised by :func:`backend.sketch.raster.rasterize_strokes` (round joints), then a blur and
    re-threshold (Gaussian sigma 0.5-1.5 px at 512) rounds the ends and merges close lines, as felt tips
    do. ``rgb`` and ``label`` give only the size.

    Returns ``(S, S)`` uint8, 255 paper, 0 ink.
    """
    s = _side(label)
    factor = rng.uniform(3.0, 4.0)
    out = []
    for st in doc.get("strokes", []):
        pts = np.asarray(st.get("points", []), np.float64).reshape(-1, 2)
        if len(pts) == 0:
            continue
        length = _arc_length(pts)
        if length < 0.04 and rng.random() < 0.5:
            continue
        if st.get("group") != "face_outline" and rng.random() < 0.05:
            continue
        if len(pts) > 2:
            pts = cv2.approxPolyDP(pts.astype(np.float32).reshape(-1, 1, 2), 0.003, False).reshape(-1, 2).astype(np.float64)
        w = float(st.get("width", 0.004)) * factor * rng.uniform(0.85, 1.15)
        u = np.linspace(0, 1, len(pts))
        swell = 1 + 0.15 * np.sin(2 * math.pi * rng.uniform(0.3, 1.5) * u + rng.uniform(0, 2 * math.pi))
        out.append({"points": pts.tolist(), "width": w, "widths": (w * swell).tolist(), "group": st.get("group")})
        for end in (pts[0], pts[-1]):
            if rng.random() < 0.3:
                out.append({"points": [end.tolist()], "width": w * rng.uniform(1.1, 1.5), "group": st.get("group")})
    d = copy.copy(doc)
    d["strokes"] = out
    img = rasterize_strokes(d, size=s)
    soft = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 1.5) * s / 512)
    return np.where(soft < 128, 0, 255).astype(np.uint8)


# ---- strands ---------------------------------------------------------------------------------------

def has_long_hair(label: np.ndarray) -> bool:
    """Whether the hair (label ``hair``) reaches more than :data:`LONG_HAIR_BELOW_JAW` of the side below
    the lowest skin row (the jaw). False without hair or skin."""
    lab = np.asarray(label)
    hair_rows = np.nonzero((lab == HAIR).any(1))[0]
    skin_rows = np.nonzero((lab == SKIN).any(1))[0]
    if len(hair_rows) == 0 or len(skin_rows) == 0:
        return False
    return bool(hair_rows.max() > skin_rows.max() + LONG_HAIR_BELOW_JAW * lab.shape[0])


def _side_spans(hair: np.ndarray, cx: float, left: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: (has hair on that side, outer edge x, inner edge x) of the hair left or right of ``cx``."""
    cols = np.arange(hair.shape[1])
    side = hair & ((cols < cx) if left else (cols >= cx))[None, :]
    has = side.any(1)
    big = np.where(side, cols[None, :], -1)
    small = np.where(side, cols[None, :], len(cols))
    lo, hi = small.min(1).astype(np.float64), big.max(1).astype(np.float64)
    return has, (lo if left else hi), (hi if left else lo)


def _strand_lines(hair: np.ndarray, rng: np.random.Generator, n: int) -> list[np.ndarray]:
    """``n`` long strands ``(m, 2)`` pixels (x, y) through the hair region, from near the parting down
    to its lower ends, split between the two sides; each runs at a fixed fraction between the side's
    outer and inner edge (row by row, smoothed), one per side close to the outer edge."""
    k = hair.shape[0] / 512.0
    ys, xs = np.nonzero(hair)
    cx = float(np.median(xs[ys <= np.percentile(ys, 20)])) + rng.normal(0, 6 * k)
    lines = []
    n_left = int(np.clip(n // 2 + rng.integers(-1, 2), 2, n - 2))
    for left, count in ((True, n_left), (False, n - n_left)):
        has, outer, inner = _side_spans(hair, cx, left)
        rows = np.nonzero(has)[0]
        if len(rows) < 8 or count <= 0:
            continue
        fr = np.concatenate([[rng.uniform(0.0, 0.08)], rng.uniform(0.1, 0.95, size=count - 1)])
        # smooth the edges over the side's rows (gaps in between are bridged by interpolation)
        r0, r1 = rows.min(), rows.max()
        yy = np.arange(r0, r1 + 1)
        o = np.interp(yy, rows, outer[rows])
        i_ = np.interp(yy, rows, inner[rows])
        sig = 6 * k
        o = cv2.GaussianBlur(o.reshape(-1, 1).astype(np.float32), (1, 0), sig).ravel() if len(yy) > 3 else o
        i_ = cv2.GaussianBlur(i_.reshape(-1, 1).astype(np.float32), (1, 0), sig).ravel() if len(yy) > 3 else i_
        for f in fr:
            top = r0 + int(rng.uniform(0.0, 0.12) * (r1 - r0)) if f > 0.1 else r0
            bottom = r0 + int(rng.uniform(0.8, 1.0) * (r1 - r0))
            sel = slice(top - r0, bottom - r0 + 1)
            y = yy[sel].astype(np.float64)
            if len(y) < 4:
                continue
            x = o[sel] + f * (i_[sel] - o[sel])
            x = x + rng.uniform(1.5, 4) * k * np.sin(y / (rng.uniform(25, 60) * k) + rng.uniform(0, 6.3))
            step = max(1, int(6 * k))
            pts = np.stack([x[::step], y[::step]], 1)
            if rng.random() < 0.5:  # a curl at the end
                end, sgn = pts[-1], (-1 if left else 1) * rng.choice([-1, 1])
                t = np.linspace(0, rng.uniform(1.5, 3.0), 6)[1:]
                r = rng.uniform(5, 12) * k
                curl = end + np.stack([sgn * r * (1 - np.cos(t)), r * np.sin(t)], 1)
                pts = np.concatenate([pts, curl])
            lines.append(pts)
    return lines


def _face_side_runs(doc: dict, label: np.ndarray) -> list[dict]:
    """The pieces of the document's ``hair`` strokes that run along the face (within 1.5 % of the side of
    the skin): the hairline and the face's sides, which a strand drawing keeps while its strands replace
    the hair's outer silhouette. Pieces of fewer than 3 points are left out."""
    s = label.shape[0]
    r = max(1, round(0.015 * s))
    near_skin = cv2.dilate((label == SKIN).astype(np.uint8),
                           cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))) > 0
    out = []
    for st in doc.get("strokes", []):
        if st.get("group") != "hair":
            continue
        pts = np.asarray(st.get("points", []), np.float64).reshape(-1, 2)
        if len(pts) < 3:
            continue
        ij = np.clip(np.round(pts * s).astype(int), 0, s - 1)
        keep = near_skin[ij[:, 1], ij[:, 0]]
        # runs of kept points
        edges = np.flatnonzero(np.diff(np.concatenate([[0], keep.astype(np.int8), [0]])))
        for a, b in zip(edges[::2], edges[1::2]):
            if b - a >= 3:
                out.append({**{k: v for k, v in st.items() if k not in ("points", "widths")},
                            "points": pts[a:b].tolist(), "group": "hair"})
    return out


def strands_sketch(doc: dict, rgb: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Long hair drawn as 5-12 long flowing strands (:func:`_strand_lines`) instead of the hair's outer
    outline and hair-flow strokes; the hair strokes' pieces along the face (:func:`_face_side_runs`) and
    the other strokes clean (50 %) or rough. Strands are 1-1.6x the document's
    hair stroke width, drawn by :func:`backend.sketch.raster.rasterize_strokes`, so they stop where the
    hair region ends (the label map, the target, keeps the full hair). Heads without long hair
    (:func:`has_long_hair` False) are drawn as :func:`hatched_sketch` with the same generator. ``rgb`` is
    not used.

    Returns ``(S, S)`` uint8, 255 paper, 0 ink.
    """
    s = _side(label)
    lab = np.asarray(label)
    if not has_long_hair(lab):
        return hatched_sketch(doc, rgb, lab, rng)
    hair_w = [float(st.get("width", 0.004)) for st in doc.get("strokes", []) if st.get("group") == "hair"]
    w = (float(np.median(hair_w)) if hair_w else 0.004) * rng.uniform(1.0, 1.6)
    face_side = _face_side_runs(doc, lab)
    base = _without_groups(doc, ("hair", "hair_flow"))
    base["strokes"] = base["strokes"] + face_side
    base = _base_strokes(base, rng)
    strands = [{"points": (p / s).round(5).tolist(), "width": w * rng.uniform(0.8, 1.2), "group": "hair_strand"}
               for p in _strand_lines(lab == HAIR, rng, int(rng.integers(5, 13)))]
    d = copy.copy(base)
    d["strokes"] = list(base["strokes"]) + strands
    return rasterize_strokes(d, size=s)


# ---- registry --------------------------------------------------------------------------------------

def _clean(doc: dict, rgb: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return rasterize_strokes(doc, size=_side(label))


def _rough(doc: dict, rgb: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return rasterize_strokes(rough_strokes(doc, rng), size=_side(label))


def _pencil(doc: dict, rgb: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return pencil_sketch(_rgb_at(rgb, _side(label)), rng, np.asarray(label))


#: Weights of the styles ``s3d-data synth`` draws the stored sketch in (generator 0.5.0 on; 0.1.0-0.4.0 drew
#: clean 0.45, rough 0.35, pencil 0.20). ``strands`` on a head without long hair is drawn and recorded as
#: ``hatched``, so ``hatched`` ends up more common than its weight.
STYLES: dict[str, float] = {"clean": 0.30, "rough": 0.22, "pencil": 0.13,
                            "portrait": 0.10, "hatched": 0.09, "marker": 0.08, "strands": 0.08}


def choose_style(rng: np.random.Generator) -> str:
    """Random style name with the :data:`STYLES` weights."""
    names = list(STYLES)
    p = np.array([STYLES[n] for n in names])
    return str(rng.choice(names, p=p / p.sum()))


#: Every SynHead style by name: ``fn(doc, rgb, label, rng) -> (S, S) uint8`` (255 paper, 0 ink).
STYLE_FUNCTIONS: dict[str, StyleFn] = {
    "clean": _clean, "rough": _rough, "pencil": _pencil,
    "portrait": portrait_sketch, "hatched": hatched_sketch, "marker": marker_sketch, "strands": strands_sketch,
}


def check_style_names(names: Any) -> list[str]:
    """The style names as a list, checked against :data:`STYLE_FUNCTIONS`.

    Raises:
        ValueError: an unknown name, or no name at all.
    """
    names = [names] if isinstance(names, str) else list(names)
    bad = [n for n in names if n not in STYLE_FUNCTIONS]
    if bad or not names:
        raise ValueError(f"unknown sketch style(s) {bad or names}; known: {', '.join(STYLE_FUNCTIONS)}")
    return names


def draw_style(name: str, doc: dict, rgb: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draw the head in style ``name`` (:data:`STYLE_FUNCTIONS`): ``(S, S)`` uint8, 255 paper, 0 ink,
    ``S`` the side of ``label``. ``rgb`` may be None for a style not in :data:`NEEDS_RGB`.

    Raises:
        ValueError: unknown style name, a non-square label map, or an rgb that is not ``(H, W, 3)`` (or is
        None) for a style in :data:`NEEDS_RGB`.
    """
    check_style_names([name])
    if name in NEEDS_RGB and rgb is None:
        raise ValueError(f"style {name!r} is drawn from the front render: pass rgb")
    return STYLE_FUNCTIONS[name](doc, rgb, np.asarray(label), rng)


def style_rng(seed: int, name: str) -> np.random.Generator:
    """The generator of head ``seed`` drawn in style ``name`` (evaluation and contact sheets): seeded
    from the seed and the style name's bytes, so every style of every head has its own fixed stream."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), *name.encode("utf-8")]))
