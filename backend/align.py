"""Image alignment (auto-framing): place a drawing's content box onto the canonical framing of the training sketches.

The networks were trained on SynHead sketches, whose input view spans the tri-plane box exactly
(backend/coords.py) with the head at a canonical placement (random scale +-10 %, shift +-5 %). Real
drawings are framed anyhow, so before inference the bounding box of the ink (robust percentiles, so a
stray speck does not move it) is scaled uniformly and shifted onto ``CANONICAL_CONTENT_BOX``: the median
content box of SynHead sketches, read from ``backend/canonical_framing.json`` (written by the SynHead
generator, training/synhead) or, while that file is absent, the documented defaults below.

Placement rule (docs/design.md section 3): the scale is the largest that
keeps the content box inside the canonical box in both width and height; the content is centred
horizontally on the canonical centre and its top edge is put on the canonical top edge (heads are
anchored at the crown; how much neck and shoulder a drawing shows varies and is often cut by the page).

Landmark refinement (second pass): the content box is only a rough guide (shoulders, long hair and the
page edge move it), so once a first mask exists the framing is redone from two facial landmarks, the
way face data sets are aligned (FFHQ / CelebA-HQ align on the eyes and the mouth): the centroid of the
eye classes goes to ``eye_center`` and the eye-to-mouth distance is scaled to ``eye_mouth_distance``
of the mask's label set (measured on SynHead masks for celebamask-hq-19, on SynCat masks for seg2cat;
``canonical_landmarks(labels=...)``, each set's canonical framing file may override its defaults). No
rotation: the transform stays a uniform scale and a shift. Finding the landmarks and the head box in a
mask and the canonical places per label set are backend/align_landmarks.py (its names are re-exported
here); its ``LANDMARK_REFRAMING`` switches the second pass on or off per label set (on for both).

All transforms are affine maps of continuous pixel coordinates (pixel centres at integers, x right,
y down) from the input image's own pixel frame to the ``size`` x ``size`` framed image, recorded in
result.json so the mask can be mapped back onto the input (:func:`unframe_mask`).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from backend.align_landmarks import (CANONICAL_FRAMING_PATH, DEFAULT_CANONICAL_HEAD_BOX,  # noqa: F401 - re-exported
                                     DEFAULT_CANONICAL_LANDMARKS, EYE_IDS, FACE_IDS, HEAD_IDS, LANDMARK_REFRAMING,
                                     MIN_LANDMARK_PIXELS, MOUTH_IDS, canonical_head_box, canonical_landmarks,
                                     landmark_reframing, mask_head_box, mask_landmarks)
from backend.errors import CodedError
from backend.labels import CELEBAMASK_HQ, LabelSet

#: Defaults used while ``canonical_framing.json`` is absent: normalised image coords, y down.
DEFAULT_CANONICAL_CONTENT_BOX = {"center": [0.5, 0.54], "width": 0.62, "height": 0.88, "n": 0,
                                 "source": "defaults in backend/align.py"}
#: Percentiles of the ink coordinates that define the content box (robust to specks).
CONTENT_PERCENTILES = (0.2, 99.8)


class FramingError(CodedError, ValueError):
    """Content that cannot be framed (e.g. nothing drawn). ``code`` is a stable identifier for APIs."""


def canonical_content_box(path: str | Path | None = None) -> dict:
    """The canonical content box ``{"center": [cx, cy], "width": w, "height": h, "n", "source"}``.

    Coordinates are fractions of the input view (x right, y down). Read from ``path`` (default
    ``CANONICAL_FRAMING_PATH``); the defaults are returned when the file is absent or malformed.
    """
    path = Path(path) if path is not None else CANONICAL_FRAMING_PATH
    try:
        data = json.loads(path.read_text())
        cx, cy = (float(v) for v in data["center"])
        w, h = float(data["width"]), float(data["height"])
        if not (0 < w <= 1.5 and 0 < h <= 1.5 and all(map(math.isfinite, (cx, cy, w, h)))):
            raise ValueError("box out of range")
        return {"center": [cx, cy], "width": w, "height": h, "n": int(data.get("n", 0)), "source": str(path.name)}
    except (OSError, ValueError, KeyError, TypeError):
        return dict(DEFAULT_CANONICAL_CONTENT_BOX)


@dataclass
class FramingTransform:
    """Affine map from the input's pixel frame to the framed ``output_size`` square.

    Attributes:
        matrix: 2 x 3 row-major ``[[s, 0, tx], [0, s, ty]]``: ``framed = s * input + t`` (pixels).
        input_size: ``[width, height]`` of the input image, pixels.
        output_size: side of the framed square image, pixels.
        content_box: ``[x0, y0, x1, y1]`` of the ink in the input image, pixels (None for no content).
        canonical_box: the canonical content box used (see :func:`canonical_content_box`).
        auto_framed: False with ``--no-frame`` (the input was only scaled to the square).
        method: ``content_box``, ``landmarks`` (eye/mouth alignment), ``head_box`` (head top and chin
            of the mask, when eyes or mouth are missing), ``head_mask`` (a whole-body drawing: the head framed
            from the first mask, backend/whole_body_framing.py) or ``none`` (``--no-frame``).
        landmarks: the eye and mouth centroids (or the head box) in the input's pixels.
    """

    matrix: list[list[float]]
    input_size: list[int]
    output_size: int
    content_box: list[float] | None
    canonical_box: dict | None
    auto_framed: bool
    method: str = "content_box"
    landmarks: dict | None = None

    @property
    def scale(self) -> float:
        """Input pixels -> framed pixels."""
        return float(self.matrix[0][0])

    def as_array(self) -> np.ndarray:
        """``(2, 3)`` float64 matrix."""
        return np.asarray(self.matrix, dtype=np.float64)

    def to_dict(self) -> dict:
        """JSON-ready dict (result.json ``framing``)."""
        return asdict(self)


def content_box(ink: np.ndarray) -> list[float] | None:
    """Robust bounding box ``[x0, y0, x1, y1]`` (pixels) of the True pixels of ``ink`` ``(H, W)`` bool."""
    ys, xs = np.nonzero(ink)
    if len(xs) == 0:
        return None
    lo, hi = CONTENT_PERCENTILES
    x0, x1 = np.percentile(xs, [lo, hi])
    y0, y1 = np.percentile(ys, [lo, hi])
    return [float(x0) - 0.5, float(y0) - 0.5, float(x1) + 0.5, float(y1) + 0.5]


def framing_transform(ink: np.ndarray, size: int = 512, auto_frame: bool = True,
                      canonical: dict | None = None) -> FramingTransform:
    """Compute the transform that frames the content of ``ink`` ``(H, W)`` bool into a ``size`` square.

    Without ``auto_frame`` the whole image is scaled uniformly to fit the square and centred
    (letterboxing non-square images), which keeps inputs already in the canonical framing unchanged.

    Raises:
        FramingError: ``auto_frame`` and nothing drawn (``framing_no_content``).
    """
    h, w = ink.shape
    if not auto_frame:
        s = size / max(w, h)
        tx = (size - w * s) / 2.0 + 0.5 * s - 0.5
        ty = (size - h * s) / 2.0 + 0.5 * s - 0.5
        return FramingTransform([[s, 0.0, tx], [0.0, s, ty]], [w, h], size, content_box(ink), None, False, "none")
    box = content_box(ink)
    if box is None:
        raise FramingError("framing_no_content", "nothing drawn to frame; draw the head, or pass --no-frame")
    canonical = canonical or canonical_content_box()
    x0, y0, x1, y1 = box
    bw, bh = max(x1 - x0, 1.0), max(y1 - y0, 1.0)
    cw, ch = canonical["width"] * size, canonical["height"] * size
    s = min(cw / bw, ch / bh)
    cx = canonical["center"][0] * size
    top = (canonical["center"][1] - canonical["height"] / 2.0) * size
    # continuous edges: framed_edge = s * input_edge + t, with pixel centres at integers (edges at -0.5)
    tx = cx - 0.5 - s * (x0 + x1) / 2.0
    ty = top - 0.5 - s * y0
    return FramingTransform([[s, 0.0, tx], [0.0, s, ty]], [w, h], size, box, canonical, True)


def input_landmarks(framed_mask: np.ndarray, transform: FramingTransform,
                    labels: LabelSet = CELEBAMASK_HQ) -> dict | None:
    """Landmarks of a mask (ids of ``labels``) in the framed square, mapped back to the input's pixel frame
    (or None)."""
    lm = mask_landmarks(framed_mask, labels)
    if lm is None:
        return None
    s, tx, ty = transform.scale, transform.matrix[0][2], transform.matrix[1][2]
    return {k: [(v[0] - tx) / s, (v[1] - ty) / s] for k, v in lm.items()}


def landmark_transform(landmarks: dict, input_size: list[int] | tuple[int, int], size: int = 512,
                       canonical: dict | None = None, content: list[float] | None = None,
                       labels: LabelSet = CELEBAMASK_HQ) -> FramingTransform:
    """The transform that puts input-pixel ``landmarks`` (eye and mouth centroids) on the canonical ones
    (``canonical``, default those of ``labels``: :func:`canonical_landmarks`).

    Returns:
        :class:`FramingTransform` with ``method == "landmarks"``.
    """
    canonical = canonical or canonical_landmarks(labels=labels)
    e = np.asarray(landmarks["eye"], float)
    m = np.asarray(landmarks["mouth"], float)
    s = canonical["eye_mouth_distance"] * size / max(float(np.linalg.norm(m - e)), 1e-6)
    target = np.asarray(canonical["eye_center"], float) * size - 0.5  # pixel-centre coordinates
    t = target - s * e
    return FramingTransform([[s, 0.0, float(t[0])], [0.0, s, float(t[1])]], [int(input_size[0]), int(input_size[1])],
                            size, content, canonical, True, "landmarks",
                            {k: [round(float(c), 3) for c in v] for k, v in landmarks.items()})


def head_box_transform(box: dict, input_size: list[int] | tuple[int, int], size: int = 512,
                       content: list[float] | None = None, labels: LabelSet = CELEBAMASK_HQ) -> FramingTransform:
    """The transform that puts an input-pixel head box (top, chin, centre) on the canonical head box of
    ``labels`` (:func:`canonical_head_box`)."""
    c = canonical_head_box(labels)
    s = (c["chin"] - c["top"]) * size / max(box["chin"] - box["top"], 1e-6)
    tx = c["center_x"] * size - 0.5 - s * box["center_x"]
    ty = c["top"] * size - 0.5 - s * box["top"]
    return FramingTransform([[s, 0.0, tx], [0.0, s, ty]], [int(input_size[0]), int(input_size[1])], size, content,
                            dict(c), True, "head_box", {k: round(float(v), 3) for k, v in box.items()})


def refine_with_landmarks(first: FramingTransform, framed_mask: np.ndarray,
                          max_change: float = 2.0, labels: LabelSet = CELEBAMASK_HQ) -> FramingTransform | None:
    """Second framing pass from a first mask (ids of ``labels``, in ``first``'s framed square); None if not
    usable, and always None for a set without landmark classes or whose switch is off (the first,
    content-box framing stays; ``backend.align_landmarks.LANDMARK_CLASSES`` and ``LANDMARK_REFRAMING``).

    Eye and mouth landmarks are used when the mask has them and their scale agrees within 25 % with the
    head box's (head top and chin), else the head box.
    The refined scale must stay within ``max_change`` times the first pass's scale (otherwise the mask is
    more likely wrong than the first framing).
    """
    if not landmark_reframing(labels):
        return None
    lm = input_landmarks(framed_mask, first, labels)
    box = mask_head_box(framed_mask, labels)
    t_box = None
    if box is not None:
        s, tx, ty = first.scale, first.matrix[0][2], first.matrix[1][2]
        box_in = {"top": (box["top"] - ty) / s, "chin": (box["chin"] - ty) / s, "center_x": (box["center_x"] - tx) / s}
        t_box = head_box_transform(box_in, first.input_size, first.output_size, first.content_box, labels)
    t = (landmark_transform(lm, first.input_size, first.output_size, content=first.content_box, labels=labels)
         if lm else None)
    if t is not None and t_box is not None and not (1 / 1.25 <= t.scale / t_box.scale <= 1.25):
        t = t_box  # eyes or mouth mislabelled (e.g. a moustache read as mouth): trust the large regions
    t = t or t_box
    if t is None:
        return None
    if not (1.0 / max_change <= t.scale / first.scale <= max_change):
        return None
    return t


def apply_to_image(image: np.ndarray, transform: FramingTransform, fill: int = 255, nearest: bool = False) -> np.ndarray:
    """Resample ``image`` ``(H, W)`` uint8 (input frame) into the framed ``(S, S)`` uint8 square.

    Downscaling uses area averaging first (so thin strokes stay visible as grey, not aliased away);
    ``nearest`` (for label maps) keeps ids exact.
    """
    size = transform.output_size
    m = transform.as_array()
    s = transform.scale
    if not nearest and s < 0.75:
        # area-average down to about the target scale, then the exact affine map from there
        h, w = image.shape
        nw, nh = max(1, int(round(w * s))), max(1, int(round(h * s)))
        small = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
        sx, sy = nw / w, nh / h
        # small = (input + 0.5) * sx - 0.5  ->  input = (small + 0.5) / sx - 0.5
        pre = np.array([[1 / sx, 0, 0.5 / sx - 0.5], [0, 1 / sy, 0.5 / sy - 0.5], [0, 0, 1]])
        m = (np.vstack([m, [0, 0, 1]]) @ pre)[:2]
        image = small
    flags = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    return cv2.warpAffine(image, m, (size, size), flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=int(fill))


def frame_sketch(image: np.ndarray, size: int = 512, auto_frame: bool = True,
                 canonical: dict | None = None) -> tuple[np.ndarray, FramingTransform]:
    """Frame a normalised sketch ``(H, W)`` uint8 (dark on white) into ``(size, size)`` uint8 by its
    content box (first pass; see :func:`refine_with_landmarks` for the second).

    Raises:
        FramingError: nothing drawn and ``auto_frame``.
    """
    t = framing_transform(image < 128, size, auto_frame, canonical)
    return resample_sketch(image, t), t


def resample_sketch(image: np.ndarray, transform: FramingTransform) -> np.ndarray:
    """Apply a framing transform to a sketch ``(H, W)`` uint8 -> ``(S, S)`` uint8, white outside.

    After resampling, the ink is re-stretched so the darkest stroke is black again (downscaling a
    large scan makes thin strokes grey).
    """
    out = apply_to_image(image, transform, fill=255)
    darkest = int(out.min())
    if 0 < darkest < 200:
        out = np.clip((out.astype(np.float32) - darkest) * (255.0 / (255 - darkest)), 0, 255).round().astype(np.uint8)
    return out


def frame_mask(mask: np.ndarray, size: int = 512, auto_frame: bool = True,
               canonical: dict | None = None, labels: LabelSet = CELEBAMASK_HQ) -> tuple[np.ndarray, FramingTransform]:
    """Frame a label-id map ``(H, W)`` uint8 (ids of ``labels``) into ``(size, size)`` uint8 ids.

    With ``auto_frame`` the eye and mouth landmarks place it (:func:`landmark_transform`) when the map
    has them and the set's landmark reframing is on (:func:`landmark_reframing`), else its content box
    (non-background pixels) does.

    Raises:
        FramingError: an all-background map and ``auto_frame``.
    """
    t = framing_transform(mask > 0, size, auto_frame, canonical)
    if auto_frame and landmark_reframing(labels):
        lm = mask_landmarks(mask, labels)
        if lm is not None:
            t = landmark_transform(lm, t.input_size, size, content=t.content_box, labels=labels)
    return apply_to_image(mask, t, fill=0, nearest=True), t


def unframe_mask(mask: np.ndarray, transform: FramingTransform) -> np.ndarray:
    """Map a framed label-id map ``(S, S)`` uint8 back to the input's pixel frame ``(H, W)`` uint8.

    Pixels of the input that fall outside the framed square become background (0).
    """
    w, h = transform.input_size
    return cv2.warpAffine(mask, transform.as_array(), (int(w), int(h)),
                          flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)
