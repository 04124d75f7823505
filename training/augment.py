"""Sketch augmentation for the sketch -> mask network.

* :func:`s3d_morphology`: S3D's per-sketch augmentation (S3D section 3.3): keep the sketch (50 %),
  ``cv2.dilate`` with a 3x3 kernel (25 %) or ``cv2.erode`` with a 7x7 kernel (25 %), applied to the image
  as stored (dark strokes on white paper), so dilation thins the strokes and erosion thickens them.
* :func:`augment_strokes`: stroke-level changes on SynHead's clean stroke JSON, because SynHead draws every
  label boundary while people draw far fewer lines: drop whole stroke groups (brows, lids, nose outline,
  hair flow, ...), drop single strokes, jitter, width changes, simplification, doubled and broken strokes.
* :func:`close_eyes`: eyes drawn closed, one arc each (stroke level; the label map keeps the eyes).
* :func:`random_framing`: small rotation, scale and shift applied to sketch and mask together.
* :func:`mirror`: the left-right mirror image of sketch and mask (left/right labels swapped); faces are
  near-symmetric, so this doubles the poses, hair partings and turn directions the network sees.
* :func:`face_marks`: artists' marks that are *not* label boundaries, drawn on the skin: hatching groups,
  stubble ticks and creases. SynHead 0.3.0 draws dense hair-flow strokes but never shades a face, so a
  network trained on it reads any patch of dense short lines as hair (hatched cheeks became
  hair, docs/models.md); these marks teach it that lines on a face can stay skin.

Every function takes a ``numpy.random.Generator``: the same seed gives the same result.

Label sets: the functions that read label ids take the data's :class:`backend.labels.LabelSet`
(``labels``, default the human ``CELEBAMASK_HQ``, so human runs draw the same numbers as before). The
mirror swaps the set's left/right labels (none for seg2cat: a cat mask is only flipped). The parts built
on SynHead's human stroke groups and human classes are no-ops for any other set, without drawing a
random number: closed and empty eyes (SynHead's ``eye`` / ``iris`` / ``lid`` groups; SynCat's ``eye``
group is a cat's whole eye outline), shading marks on skin and neck (:func:`face_marks`) and the re-draws
in the styles of real drawings (:func:`redraw_in_style`, whose tone levels are per human class).
"""
from __future__ import annotations

import copy
import math
from typing import Any, Sequence

import cv2
import numpy as np

from backend.labels import CELEBAMASK_HQ, LABEL_IDS, LabelSet
from backend.sketch.raster import rasterize_strokes

#: Stroke groups that outline the head; dropped rarely (people nearly always draw them).
OUTLINE_KEYWORDS = ("outline", "contour", "jaw", "face", "head", "chin")
#: Stroke groups of accessories: a face without them is drawn as a face without them, so dropping their
#: strokes while the label map keeps them (eye_g) teaches the network to invent them.
ACCESSORY_GROUPS = ("glasses",)


def s3d_morphology(sketch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """S3D's augmentation on ``sketch (H, W)`` float32 in [0, 1] (1 = paper): keep / dilate k3 / erode k7."""
    u = rng.random()
    if u < 0.5:
        return sketch
    if u < 0.75:
        return cv2.dilate(sketch, np.ones((3, 3), np.uint8))
    return cv2.erode(sketch, np.ones((7, 7), np.uint8))


def _simplify(points: np.ndarray, eps: float) -> np.ndarray:
    if len(points) < 3:
        return points
    out = cv2.approxPolyDP(points.astype(np.float32).reshape(-1, 1, 2), eps, False).reshape(-1, 2)
    return out if len(out) >= 2 else points[[0, -1]]


def close_eyes(strokes: list[dict[str, Any]], rng: np.random.Generator) -> list[dict[str, Any]]:
    """Closed eyes as people draw them: SynHead's eye strokes without the lower contour (group ``eye``)
    and the iris (``iris``), each upper lid (``lid``) kept as an arc or, with probability 0.5, reflected
    across its chord (a lid bulging down: a sleeping or laughing eye). The label map keeps its eyes: people
    often draw an eye as one arc, and the network must still find the eye there. Returns the new list."""
    out = []
    for s in strokes:
        group = s.get("group")
        if group in ("eye", "iris"):
            continue
        if group == "lid" and len(s.get("points", [])) >= 3 and rng.random() < 0.5:
            pts = np.asarray(s["points"], np.float64).reshape(-1, 2)
            a, d = pts[0], pts[-1] - pts[0]
            d = d / max(float(np.linalg.norm(d)), 1e-9)
            foot = a + ((pts - a) @ d)[:, None] * d  # each point's foot on the chord
            s = dict(s, points=(2 * foot - pts).tolist())
        out.append(s)
    return out


def augment_strokes(doc: dict[str, Any], rng: np.random.Generator, group_drop: float = 0.2,
                    stroke_drop: float = 0.1, closed_eyes: float = 0.0, empty_eyes: float = 0.0,
                    keep_accessories: bool = False, labels: LabelSet = CELEBAMASK_HQ) -> dict[str, Any]:
    """A changed copy of a normalised-frame stroke document (docs/contracts.md section 2).

    With probability ``closed_eyes`` (default 0, so earlier recipes draw the same numbers) the eyes are
    first redrawn closed (:func:`close_eyes`); with probability ``empty_eyes`` (default 0) the iris strokes
    (group ``iris``) are left out, so both eyes are empty outlines, as quick sketches often draw them
    (the label map keeps its eyes). Per document: a width factor in [0.5, 2]; a smooth offset field
    (wobble) of up to 0.4 % of the height. Per group: dropped with ``group_drop`` (outline groups with a
    fifth of it). Per stroke: dropped with ``stroke_drop``; Douglas-Peucker simplified (30 %); point jitter
    (sigma 0.1-0.25 %); width factor in [0.6, 1.6]; broken into pieces with gaps (15 %); doubled with a
    small offset (10 %). With ``keep_accessories`` the strokes of :data:`ACCESSORY_GROUPS` are never
    dropped (the random numbers drawn stay the same, so only those strokes change); the default (False)
    keeps the augmented test protocol of ``s3d-eval`` as it was. ``labels``: the data's label set; closed
    and empty eyes apply to the human set only (they edit SynHead's human eye groups) and are skipped,
    without drawing a random number, for any other.
    """
    out = copy.deepcopy(doc)
    strokes = out.get("strokes", [])
    if labels.subject != "human":
        closed_eyes = empty_eyes = 0.0
    if closed_eyes > 0 and rng.random() < closed_eyes:
        strokes = close_eyes(strokes, rng)
    if empty_eyes > 0 and rng.random() < empty_eyes:
        strokes = [s for s in strokes if s.get("group") != "iris"]
    # offsets below are fractions of the image height; "image" frames are in pixels
    unit = float(doc.get("height", 512)) if doc.get("frame") == "image" else 1.0
    groups = sorted({str(s.get("group", "")) for s in strokes})
    dropped = set()
    for g in groups:
        p = group_drop / 5 if any(k in g.lower() for k in OUTLINE_KEYWORDS) else group_drop
        if keep_accessories and g in ACCESSORY_GROUPS:
            p = 0.0
        if g and rng.random() < p:
            dropped.add(g)
    doc_width = float(np.exp(rng.uniform(math.log(0.5), math.log(2.0))))
    wob_a = rng.normal(0.0, 0.002, size=(2, 2))
    wob_f = rng.uniform(2.0, 6.0, size=2) * 2 * math.pi
    wob_p = rng.uniform(0, 2 * math.pi, size=2)
    new: list[dict[str, Any]] = []
    for s in strokes:
        group = str(s.get("group", ""))
        if group in dropped or (rng.random() < stroke_drop and not (keep_accessories and group in ACCESSORY_GROUPS)):
            continue
        pts = np.asarray(s.get("points", []), np.float64).reshape(-1, 2) / unit  # now fractions of the height
        if len(pts) == 0:
            continue
        if rng.random() < 0.3:
            pts = _simplify(pts * 512.0, rng.uniform(0.5, 2.5)) / 512.0
        pts = pts + rng.normal(0.0, rng.uniform(0.001, 0.0025), size=pts.shape)
        x, y = pts[:, 0], pts[:, 1]
        pts = pts + np.stack([wob_a[0, 0] * np.sin(wob_f[0] * y + wob_p[0]) + wob_a[0, 1] * np.sin(wob_f[1] * x + wob_p[1]),
                              wob_a[1, 0] * np.sin(wob_f[0] * x + wob_p[1]) + wob_a[1, 1] * np.sin(wob_f[1] * y + wob_p[0])], -1)
        pts = pts * unit
        width = float(s.get("width", 0.004 * unit)) * doc_width * float(np.exp(rng.uniform(math.log(0.6), math.log(1.6))))
        base = {k: v for k, v in s.items() if k not in ("points", "width", "widths")}
        pieces = [pts]
        if len(pts) >= 6 and rng.random() < 0.15:
            cuts = np.sort(rng.choice(np.arange(2, len(pts) - 2), size=min(2, len(pts) - 4), replace=False))
            pieces, start = [], 0
            for c in cuts:
                pieces.append(pts[start:c])
                start = c + 1  # leave a gap of one segment
            pieces.append(pts[start:])
        for piece in pieces:
            if len(piece) >= 1:
                new.append(dict(base, points=piece.tolist(), width=width))
        if rng.random() < 0.1:
            off = rng.normal(0.0, 0.003, size=2) * unit
            new.append(dict(base, points=(pts + off).tolist(), width=width * 0.8))
    out["strokes"] = new
    return out


def random_framing(sketch: np.ndarray, mask: np.ndarray, rng: np.random.Generator, max_rotation_deg: float = 5.0,
                   scale_range: tuple[float, float] = (0.92, 1.08), max_shift: float = 0.04) -> tuple[np.ndarray, np.ndarray]:
    """Rotate / scale / shift ``sketch (H, W)`` (bilinear, white border) and ``mask (H, W)`` ids (nearest,
    background border) by the same random similarity transform about the image centre."""
    h, w = sketch.shape
    ang = rng.uniform(-max_rotation_deg, max_rotation_deg)
    sc = rng.uniform(*scale_range)
    tx, ty = rng.uniform(-max_shift, max_shift, size=2) * np.array([w, h])
    m = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), ang, sc)
    m[:, 2] += (tx, ty)
    sk = cv2.warpAffine(sketch, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=1.0)
    mk = cv2.warpAffine(mask, m, (w, h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return sk, mk


#: Labels where shading marks may fall: the face's skin and the neck (not lips, eyes, brows or nose).
MARKABLE_LABELS = (LABEL_IDS["skin"], LABEL_IDS["neck"])
#: Labels marks keep away from (3 % of the height): eyes, brows and glasses.
EYE_LABELS = tuple(LABEL_IDS[n] for n in ("l_eye", "r_eye", "l_brow", "r_brow", "eye_g"))


def _mark_points(region: np.ndarray, rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` random pixels ``(n, 2)`` float64 (x, y) of a non-empty boolean ``region``."""
    ys, xs = np.nonzero(region)
    pick = rng.integers(0, len(xs), size=n)
    return np.stack([xs[pick], ys[pick]], -1).astype(np.float64)


def _direction(ang: float) -> tuple[np.ndarray, np.ndarray]:
    """Unit direction at ``ang`` radians and its normal, in image (x, y) pixels."""
    return np.array([math.cos(ang), math.sin(ang)]), np.array([-math.sin(ang), math.cos(ang)])


def _segment(layer: np.ndarray, centre: np.ndarray, half: np.ndarray, ink: int, width: int) -> None:
    cv2.line(layer, tuple(np.round(centre - half).astype(int)), tuple(np.round(centre + half).astype(int)), ink, width,
             cv2.LINE_AA)


def face_marks(sketch: np.ndarray, mask: np.ndarray, rng: np.random.Generator, max_groups: int = 6,
               labels: LabelSet = CELEBAMASK_HQ) -> np.ndarray:
    """Draw shading marks that do not change the label map onto ``sketch (H, W)`` float32 in [0, 1] (1 = paper).

    Placed on the skin and neck of ``mask (H, W)`` label ids (:data:`MARKABLE_LABELS`, eroded by 1 % of
    the height, and not within 3 % of the height of :data:`EYE_LABELS`, where a lone arc is a closed eye)
    and clipped to the skin and neck, 1 to ``max_groups`` groups, each one of:

    * hatching: 3-9 parallel straight strokes 3-10 % of the height long, 0.8-2 % apart, any angle;
    * stubble: 15-50 ticks 0.8-3 % long on the skin below its median row (the jaw);
    * creases: one or two (crossing) gently bent strokes 5-15 % long (smile and under-eye lines).

    Stroke widths are 0.2-0.7 % of the height (SynHead draws 0.2-0.6 %), ink 0-0.2 grey; sizes measured by
    eye on the hatched and stubbled dev sketches. The mask is not changed: the marks are shading, not label
    boundaries. Returns a new array; without markable pixels the sketch is returned unchanged. Not from
    S3D: this project's answer to hatched real sketches. Human label sets only: for any other ``labels``
    (the ids above are CelebAMask-HQ's) the sketch is returned unchanged and no random number is drawn.
    """
    if labels.subject != "human":
        return sketch
    h, w = sketch.shape
    markable = np.isin(mask, MARKABLE_LABELS).astype(np.uint8)
    k = max(1, int(round(0.01 * h)))
    region = cv2.erode(markable, np.ones((2 * k + 1, 2 * k + 1), np.uint8))
    # keep marks 3 % of the height away from eyes and brows: a lone arc where an eye belongs is a closed
    # (laughing) eye, not shading (without it, training lost dfdj_hand_4's eyes)
    e = max(1, int(round(0.03 * h)))
    eyes = np.isin(mask, EYE_LABELS).astype(np.uint8)
    near_eyes = cv2.dilate(eyes, np.ones((2 * e + 1, 2 * e + 1), np.uint8)).astype(bool)
    region[near_eyes] = 0
    if not region.any():
        return sketch
    # stubble sits on the jaw: the eroded skin below the skin's median row (the neck would pull it down)
    skin_rows = np.nonzero(mask == LABEL_IDS["skin"])[0]
    lower = region * (mask == LABEL_IDS["skin"])
    if len(skin_rows):
        lower[: int(np.median(skin_rows))] = 0
    layer = np.full((h, w), 255, np.uint8)
    ink = int(rng.uniform(0.0, 0.2) * 255)
    thick = lambda: max(1, int(round(rng.uniform(0.002, 0.007) * h)))  # noqa: E731
    for _ in range(int(rng.integers(1, max_groups + 1))):
        kind = rng.choice(["hatching", "stubble", "crease"], p=[0.5, 0.25, 0.25])
        if kind == "hatching":
            (c,) = _mark_points(region, rng, 1)
            d, nrm = _direction(rng.uniform(0, math.pi))
            length, gap, n = rng.uniform(0.03, 0.10) * h, rng.uniform(0.008, 0.02) * h, int(rng.integers(3, 10))
            t = thick()
            for i in range(n):
                o = c + nrm * gap * (i - n / 2) + rng.normal(0, 0.1 * gap, 2)
                _segment(layer, o, d * length * rng.uniform(0.35, 0.6), ink, t)
        elif kind == "stubble":
            t = max(1, thick() - 1)
            for c in _mark_points(lower if lower.any() else region, rng, int(rng.integers(15, 51))):
                ang = rng.uniform(0.3, 2.8)  # mostly steep ticks
                _segment(layer, c, _direction(ang)[0] * rng.uniform(0.004, 0.015) * h, ink, t)
        else:
            (c,) = _mark_points(region, rng, 1)
            ang, t = rng.uniform(0, math.pi), thick()
            for _ in range(int(rng.integers(1, 3))):
                length, bend = rng.uniform(0.05, 0.15) * h, rng.uniform(-0.3, 0.3)
                s_ = np.linspace(-0.5, 0.5, 12)[:, None]
                d, nrm = _direction(ang)
                pts = c + s_ * length * d + (bend * length * (0.25 - s_ ** 2)) * nrm
                cv2.polylines(layer, [np.round(pts).astype(np.int32)], False, ink, t, cv2.LINE_AA)
                ang += rng.uniform(0.6, 1.6)  # a second stroke crosses the first
    # clip to the (un-eroded, slightly grown) skin away from the eyes: marks never spill into hair or background
    allowed = cv2.dilate(markable, np.ones((3, 3), np.uint8)).astype(bool)
    allowed &= ~near_eyes
    marks = np.where(allowed, layer.astype(np.float32) / 255.0, 1.0)
    return np.minimum(sketch, marks).astype(np.float32)


def mirror(sketch: np.ndarray, mask: np.ndarray, labels: LabelSet = CELEBAMASK_HQ) -> tuple[np.ndarray, np.ndarray]:
    """Left-right mirror image of a sketch ``(H, W)`` (any dtype) and its label map ``(H, W)`` uint8 of
    ``labels``, with the set's left/right labels swapped (:meth:`backend.labels.LabelSet.mirror_mask`;
    seg2cat has none, so a cat mask is only flipped). Deterministic; applying it twice gives the input back.

    Raises:
        ValueError: an id outside ``labels``.
    """
    return np.ascontiguousarray(np.asarray(sketch)[:, ::-1]), labels.mirror_mask(mask)


def redraw_in_style(item: dict[str, Any], rng: np.random.Generator,
                    styles: Sequence[str] | None = None, labels: LabelSet = CELEBAMASK_HQ) -> np.ndarray | None:
    """Re-draw a :meth:`training.datasets.SynHead.sketch_item` (it needs ``strokes`` and ``mask``) in a style
    picked uniformly from ``styles`` (default :data:`training.synhead.drawing_styles.NEW_STYLES`) with
    :func:`training.synhead.drawing_styles.draw_style`. Styles drawn from the front render
    (:data:`training.synhead.drawing_styles.NEEDS_RGB`: portrait, pencil) need ``rgb_path``; without one
    (a sketch pack holds no render) the pick is among the other styles only.

    Returns ``(H, H) float32`` in [0, 1] (1 = paper) at the item's sketch size (resized, area, when the
    label map's size differs), or None when no named style can be drawn without the render or ``labels``
    is not a human set (the styles' tones are per CelebAMask-HQ class); no random number is drawn then.

    Raises:
        ValueError: an unknown style name; DataError: the render cannot be read.
    """
    from training.datasets import read_rgb
    from training.synhead.drawing_styles import NEEDS_RGB, NEW_STYLES, check_style_names, draw_style

    names = check_style_names(styles if styles is not None else NEW_STYLES)
    if labels.subject != "human":
        return None
    if not item.get("rgb_path"):
        names = [n for n in names if n not in NEEDS_RGB]
        if not names:
            return None
    name = names[int(rng.integers(len(names)))]
    rgb = (read_rgb(item["rgb_path"]) * 255.0 + 0.5).astype(np.uint8) if name in NEEDS_RGB else None
    img = draw_style(name, item["strokes"], rgb, item["mask"], rng)
    size = np.asarray(item["sketch"]).shape[0]
    if img.shape[0] != size:
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    return img.astype(np.float32) / 255.0


def _quick_cat_drawing(doc: dict[str, Any], mask: np.ndarray, rng: np.random.Generator, body_prob: float,
                       minimal_marks_prob: float) -> tuple[dict[str, Any], np.ndarray]:
    """:func:`augmented_sketch`'s quick-doodle step for cats (its docstring)."""
    from training.syncat.quick_drawings import head_with_body, minimal_face_marks
    from training.syncat.strokes import doodle_strokes

    changed = False
    if minimal_marks_prob > 0 and rng.random() < minimal_marks_prob:
        doc, changed = minimal_face_marks(doc, rng), True
    if body_prob > 0 and rng.random() < body_prob and np.any(mask > 0):
        (doc, mask), changed = head_with_body(doc, mask, rng), True
    if changed and rng.random() < 0.5:
        doc = doodle_strokes(doc, rng)
    return doc, mask


def augmented_sketch(item: dict[str, Any], rng: np.random.Generator, stroke_prob: float = 0.5,
                     framing_prob: float = 0.5, scale_range: tuple[float, float] = (0.92, 1.08),
                     max_shift: float = 0.04, marks_prob: float = 0.0,
                     mirror_prob: float = 0.0, closed_eyes_prob: float = 0.0,
                     empty_eyes_prob: float = 0.0, keep_accessories: bool = False,
                     rough_prob: float = 0.0, new_style_prob: float = 0.0,
                     new_styles: Sequence[str] | None = None,
                     labels: LabelSet = CELEBAMASK_HQ, body_prob: float = 0.0,
                     minimal_marks_prob: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Full training augmentation of one :meth:`training.datasets.SynHead.sketch_item`:
    with ``stroke_prob`` (and when strokes exist) the sketch is re-drawn from augmented strokes (eyes
    drawn closed with ``closed_eyes_prob``, :func:`close_eyes`, or without irises with ``empty_eyes_prob``),
    else the stored sketch (any style) is used; with ``marks_prob``, shading marks on the skin
    (:func:`face_marks`); then S3D's morphology; then, with ``framing_prob``, random framing
    (:func:`random_framing` with ``scale_range`` and ``max_shift``); last, with ``mirror_prob``, the mirror
    image (:func:`mirror`). ``marks_prob``, ``mirror_prob``, ``closed_eyes_prob`` and ``empty_eyes_prob``
    default to 0 so earlier recipes draw the same random numbers as before; ``keep_accessories`` (default
    False) keeps glasses strokes in the re-draw (:func:`augment_strokes`); with ``rough_prob`` (default 0) a
    re-draw is also made rough as SynHead's ``rough`` style is (jittered, broken, doubled strokes,
    :func:`training.synhead.sketch_styles.rough_strokes`), a fresh rough drawing each time where the data
    set stores one per head. With ``new_style_prob`` (default 0: off, no random number drawn) and when the
    item has strokes, the sketch is instead re-drawn from them in one of ``new_styles`` (default all of
    :data:`training.synhead.drawing_styles.NEW_STYLES`, picked uniformly; :func:`redraw_in_style`: without a
    front render, ``rgb_path``, only among the styles that need none), and then goes on through the marks,
    morphology, framing and mirror steps like any other sketch.

    Quick cat doodles (:mod:`training.syncat.quick_drawings`, seg2cat items with strokes; both default 0:
    off, no random number drawn): a stroke re-draw's face is reduced to a few marks with
    ``minimal_marks_prob`` (:func:`~training.syncat.quick_drawings.minimal_face_marks`), and drawn as a
    whole cat with the head small at one end with ``body_prob``
    (:func:`~training.syncat.quick_drawings.head_with_body`: the mask moves with the head, the body is
    background); a re-draw with either is then made a doodle
    (:func:`training.syncat.strokes.doodle_strokes`) half of the time.

    ``labels``: the item's label set (default the human one). For any other set the human-only steps are
    skipped without drawing random numbers: the re-draw in a new style, closed / empty eyes and the marks
    (the module docstring); the mirror swaps that set's left/right labels.

    Returns ``(sketch (H, H) float32 in [0, 1], mask (H, H) uint8)`` at the item's own size.

    Raises:
        ValueError: an unknown name in ``new_styles``.
    """
    sketch, mask = item["sketch"], item["mask"]
    redrawn = None
    human = labels.subject == "human"
    if human and new_style_prob > 0 and item.get("strokes") and rng.random() < new_style_prob:
        redrawn = redraw_in_style(item, rng, new_styles, labels)
    if redrawn is not None:
        sketch = redrawn
    elif item.get("strokes") and rng.random() < stroke_prob:
        doc = augment_strokes(item["strokes"], rng, closed_eyes=closed_eyes_prob, empty_eyes=empty_eyes_prob,
                              keep_accessories=keep_accessories, labels=labels)
        if rough_prob > 0 and rng.random() < rough_prob:
            from training.synhead.sketch_styles import rough_strokes

            doc = rough_strokes(doc, rng)
        if labels.subject == "cat" and (body_prob > 0 or minimal_marks_prob > 0):
            doc, mask = _quick_cat_drawing(doc, mask, rng, body_prob, minimal_marks_prob)
        sketch = rasterize_strokes(doc, size=sketch.shape[0]).astype(np.float32) / 255.0
    if human and marks_prob > 0 and rng.random() < marks_prob:
        sketch = face_marks(np.asarray(sketch, np.float32), mask, rng, labels=labels)
    sketch = s3d_morphology(np.ascontiguousarray(sketch, dtype=np.float32), rng)
    if rng.random() < framing_prob:
        sketch, mask = random_framing(sketch, mask, rng, scale_range=scale_range, max_shift=max_shift)
    if mirror_prob > 0 and rng.random() < mirror_prob:
        sketch, mask = mirror(sketch, mask, labels)
    return sketch, mask
