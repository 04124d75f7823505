"""Sketch intake: any common image or a stroke document -> grey sketch, dark strokes on white paper.

Accepted inputs (docs/design.md section 1):

* image files or bytes in any format Pillow reads (PNG, JPEG, WebP, BMP, TIFF, ...), in any mode:
  grey (``L``, ``1``), ``LA``, RGB, RGBA (transparent pixels become white paper), 16-bit grey
  (``I;16``), 32-bit integer or float grey (``I``, ``F``), palette (``P``, with or without
  transparency) and CMYK; the EXIF orientation is applied;
* stroke JSON (docs/contracts.md section 2), drawn by :func:`backend.sketch.raster.rasterize_strokes`,
  the same code that draws SynHead's clean-style sketches;
* numpy arrays ``(H, W)`` or ``(H, W, 3|4)`` (uint8, uint16 or float in [0, 1]).

Normalisation: the paper level (a high percentile) is mapped to white and the ink level (a low
percentile) to black, light-on-dark drawings are inverted, and paper texture / faint noise above
``PAPER_CUTOFF`` of the paper level is cleaned to pure white, so every sketch reaches the networks as
dark strokes on white, whatever scanner, pen or background produced it.

Errors are :class:`IntakeError` with a stable ``code`` (``image_unreadable``, ``image_too_large``,
``image_too_small``, ``image_blank``, ``input_bad_type``, ``strokes_*`` / ``stroke_*`` from the
rasteriser) and a sentence that says what to do.
"""
from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from backend.errors import CodedError
from backend.sketch.paper import clean_paper
from backend.sketch.raster import StrokeError, rasterize_strokes

#: Largest accepted image side in pixels (decompression-bomb guard) and smallest useful side.
MAX_SIDE_PX = 8192
MIN_SIDE_PX = 32
#: Side of the square raster used for stroke documents, pixels.
STROKE_RASTER_PX = 512
#: Pixels lighter than this fraction of the way from ink to paper become pure paper (noise removal).
PAPER_CUTOFF = 0.85
#: Minimum fraction of ink pixels for a sketch to count as non-blank.
MIN_INK_FRACTION = 1e-4


class IntakeError(CodedError, ValueError):
    """An input that cannot be turned into a sketch or a mask. ``code`` is a stable identifier for APIs."""


@dataclass
class SketchInput:
    """A normalised sketch in the input's own pixel frame.

    Attributes:
        image: ``(H, W)`` uint8, 255 white paper, 0 black ink, in the pixel frame of the input image
            (for stroke documents: the ``STROKE_RASTER_PX`` square raster).
        kind: ``"image"`` or ``"strokes"``.
        source_mode: the Pillow mode of the input image (``"strokes"`` / ``"array"`` otherwise).
        inverted: whether light strokes on a dark background were inverted.
        notes: human-readable remarks on what intake did (e.g. transparency flattened).
        intake: JSON-ready record of the paper clean-up steps and their measurements
            (:func:`backend.sketch.paper.clean_paper`; ``result.json``'s ``intake``).
        stages: ``[(name, (H', W') uint8)]`` snapshots of the clean-up (only with ``keep_stages``).
    """

    image: np.ndarray
    kind: str
    source_mode: str
    inverted: bool = False
    notes: list[str] = field(default_factory=list)
    intake: dict = field(default_factory=dict)
    stages: list = field(default_factory=list)

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` of the input pixel frame in pixels."""
        return int(self.image.shape[1]), int(self.image.shape[0])


def load_sketch(source: Any, keep_stages: bool = False, clean: bool = True) -> SketchInput:
    """Read a sketch from a path, bytes, a Pillow image, a numpy array or a stroke document (dict).

    Images go through the paper clean-up (:func:`backend.sketch.paper.clean_paper`: scanner edges,
    paper flattening, denoising, tonal shading, margin marks) before the level normalisation.

    Args:
        source: ``str``/``Path`` to an image file or a ``.json`` stroke document; ``bytes`` of an image
            file or of stroke JSON; a ``PIL.Image.Image``; an ``np.ndarray``; or a stroke ``dict``.
        keep_stages: keep a snapshot of each clean-up stage in ``SketchInput.stages`` (debug image).
        clean: False skips the paper clean-up (only the level normalisation, as before it existed).

    Returns:
        :class:`SketchInput` with the normalised ``(H, W)`` uint8 image (dark strokes on white).

    Raises:
        IntakeError: unreadable or unsupported input, an image that is too large or too small, a blank
            image (no strokes), or an invalid stroke document (the rasteriser's code is kept).
    """
    if isinstance(source, dict):
        return _from_strokes(source)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise IntakeError("input_not_found", f"input file {path} does not exist")
        data = path.read_bytes()
        if path.suffix.lower() == ".json":
            return _from_strokes(_parse_json(data, str(path)))
        return _from_image_bytes(data, str(path), keep_stages, clean)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if data.lstrip()[:1] == b"{":
            return _from_strokes(_parse_json(data, "the request body"))
        return _from_image_bytes(data, "the uploaded data", keep_stages, clean)
    if isinstance(source, np.ndarray):
        grey = _array_to_grey(source)
        return _finish(grey, "image", "array", [], keep_stages=keep_stages, clean=clean)
    try:
        from PIL import Image

        if isinstance(source, Image.Image):
            grey, notes = _pil_to_grey(source)
            return _finish(grey, "image", source.mode, notes, keep_stages=keep_stages, clean=clean)
    except ImportError:  # pragma: no cover - Pillow is a dependency
        pass
    raise IntakeError("input_bad_type", f"cannot read a sketch from a {type(source).__name__}; "
                      "pass an image file, image bytes or a stroke JSON document")


def normalize_grey(grey: np.ndarray, allow_invert: bool = True, info: dict | None = None) -> tuple[np.ndarray, bool]:
    """Normalise a grey drawing ``(H, W)`` float64 in [0, 1] to uint8 dark strokes on white.

    A drawing whose median is dark is inverted first (light ink on a dark board). The paper level is
    then the 90th percentile, the ink level the 0.1th percentile (the darkest few hundred pixels of a
    512^2 drawing); values are stretched linearly between them and everything within
    ``1 - PAPER_CUTOFF`` of paper becomes 255.

    Args:
        allow_invert: False when the caller has already put the drawing dark on light.
        info: when given, ``paper_level`` and ``ink_level`` are written into it.

    Returns:
        ``(image (H, W) uint8, inverted)``.
    """
    grey = np.asarray(grey, dtype=np.float64)
    inverted = False
    if allow_invert and _is_light_on_dark(grey):
        grey = 1.0 - grey
        inverted = True
    paper = float(np.percentile(grey, 90))
    ink = float(np.percentile(grey, 0.1))
    if info is not None:
        info.update(paper_level=round(paper, 4), ink_level=round(ink, 4))
    if paper - ink < 0.08:  # no contrast at all: blank (checked by the caller)
        return np.full(grey.shape, 255, np.uint8), inverted
    t = np.clip((grey - ink) / (paper - ink), 0.0, 1.0)
    t[t >= PAPER_CUTOFF] = 1.0
    t = np.clip(t / PAPER_CUTOFF, 0.0, 1.0)
    return np.round(t * 255.0).astype(np.uint8), inverted


def _is_light_on_dark(grey: np.ndarray) -> bool:
    # A drawing is mostly paper: if the median is dark, it is light ink on a dark background.
    return bool(np.median(grey) < 0.5)


def _parse_json(data: bytes, where: str) -> dict:
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise IntakeError("strokes_bad_json", f"{where} is not valid stroke JSON: {e}") from None
    except RecursionError:
        raise IntakeError("strokes_bad_json", f"{where} is nested too deeply to be a stroke document") from None
    if not isinstance(doc, dict):
        raise IntakeError("strokes_not_object", "stroke JSON must be an object with a 'strokes' list")
    return doc


def _from_strokes(doc: dict) -> SketchInput:
    try:
        img = rasterize_strokes(doc, size=STROKE_RASTER_PX)
    except StrokeError as e:
        raise IntakeError(e.code, str(e)) from None
    sk = _finish(img.astype(np.float64) / 255.0, "strokes", "strokes", [], normalise=False)
    sk.intake = {"steps": [], "kind": "strokes", "note": "drawn by the rasteriser: no paper to clean"}
    return sk


def open_image_bytes(data: bytes, where: str, hint: str):
    """Decode image bytes with Pillow under the size limits; return the loaded ``PIL.Image.Image``.

    ``where`` names the input in messages ("sketch.png", "the mask") and ``hint`` says what to give
    instead when the bytes are not an image. Shared by sketch and mask intake.

    Raises:
        IntakeError: ``image_unreadable`` (empty, truncated or not an image), ``image_too_large`` (a side
            over ``MAX_SIDE_PX`` or a decompression bomb).
    """
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise IntakeError("image_unreadable", f"{where} is empty; {hint}")
    Image.MAX_IMAGE_PIXELS = MAX_SIDE_PX * MAX_SIDE_PX
    try:
        im = Image.open(io.BytesIO(data))
        if max(im.size) > MAX_SIDE_PX:
            raise IntakeError("image_too_large", f"{where} is {im.size[0]}x{im.size[1]} px; "
                              f"the largest accepted side is {MAX_SIDE_PX} px, scale it down")
        im.load()
    except IntakeError:
        raise
    except Image.DecompressionBombError as e:
        raise IntakeError("image_too_large", f"{where} declares too many pixels ({e}); the largest accepted "
                          f"side is {MAX_SIDE_PX} px, scale it down") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise IntakeError("image_unreadable", f"{where} is not an image Pillow can read ({e}); {hint}") from None
    return im


def _from_image_bytes(data: bytes, where: str, keep_stages: bool = False, clean: bool = True) -> SketchInput:
    im = open_image_bytes(data, where, "give a PNG, JPEG or WebP sketch")
    grey, notes = _pil_to_grey(im)
    return _finish(grey, "image", im.mode, notes, keep_stages=keep_stages, clean=clean)


def _pil_to_grey(im) -> tuple[np.ndarray, list[str]]:
    """Any Pillow image -> ``(H, W)`` float64 grey in [0, 1], transparency composited on white."""
    from PIL import ImageOps

    notes: list[str] = []
    try:
        im = ImageOps.exif_transpose(im)
    except Exception:  # damaged EXIF: keep the pixels as stored
        notes.append("EXIF orientation ignored (unreadable)")
    if max(im.size) > MAX_SIDE_PX:
        raise IntakeError("image_too_large", f"image is {im.size[0]}x{im.size[1]} px; the largest accepted "
                          f"side is {MAX_SIDE_PX} px, scale it down")
    mode = im.mode
    if mode == "P":
        im = im.convert("RGBA")
        mode = "RGBA"
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or (mode == "I" and a.max(initial=0) > 255) else 255.0
        if mode == "F":
            top = 1.0 if a.max(initial=0) <= 1.0 else 255.0
        return np.clip(a / top, 0.0, 1.0), notes
    if mode == "CMYK":
        im = im.convert("RGB")
        mode = "RGB"
    if mode in ("RGBA", "LA", "PA") or "transparency" in im.info:
        rgba = np.asarray(im.convert("RGBA"), dtype=np.float64) / 255.0
        alpha = rgba[..., 3:4]
        if (alpha < 1.0).any():
            notes.append("transparent pixels treated as white paper")
        rgb = rgba[..., :3] * alpha + (1.0 - alpha)
        return _luma(rgb), notes
    if mode not in ("L", "1", "RGB"):
        im = im.convert("RGB")
    if im.mode == "RGB":
        return _luma(np.asarray(im, dtype=np.float64) / 255.0), notes
    return np.asarray(im.convert("L"), dtype=np.float64) / 255.0, notes


def _luma(rgb: np.ndarray) -> np.ndarray:
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def _array_to_grey(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype == np.uint8:
        f = a.astype(np.float64) / 255.0
    elif a.dtype == np.uint16:
        f = a.astype(np.float64) / 65535.0
    elif np.issubdtype(a.dtype, np.floating):
        f = np.clip(a.astype(np.float64), 0.0, 1.0)
    else:
        raise IntakeError("input_bad_type", f"array dtype {a.dtype} is not supported; use uint8, uint16 or float")
    if f.ndim == 2:
        return f
    if f.ndim == 3 and f.shape[2] in (3, 4):
        if f.shape[2] == 4:
            alpha = f[..., 3:4]
            f = f[..., :3] * alpha + (1.0 - alpha)
        return _luma(f)
    raise IntakeError("input_bad_type", f"array of shape {a.shape} is not an image; use (H, W) or (H, W, 3|4)")


def _finish(grey: np.ndarray, kind: str, mode: str, notes: list[str], normalise: bool = True,
            keep_stages: bool = False, clean: bool = True) -> SketchInput:
    h, w = grey.shape[:2]
    if min(h, w) < MIN_SIDE_PX:
        raise IntakeError("image_too_small", f"sketch is {w}x{h} px; it needs at least {MIN_SIDE_PX} px a side")
    if max(h, w) > MAX_SIDE_PX:
        raise IntakeError("image_too_large", f"sketch is {w}x{h} px; the largest accepted side is {MAX_SIDE_PX} px")
    intake: dict = {}
    stages: list = []
    if normalise and not clean:
        img, inverted = normalize_grey(grey)
        intake = {"steps": [], "kind": "image", "note": "paper clean-up skipped"}
    elif normalise:
        inverted = _is_light_on_dark(grey)
        if inverted:
            grey = 1.0 - grey
        paper = clean_paper(grey, keep_stages=keep_stages)
        levels: dict = {}
        img, _ = normalize_grey(paper.grey, allow_invert=False, info=levels)
        intake = dict(paper.info, kind="image", inverted=inverted, normalise=levels)
        stages = paper.stages + ([("normalised", img)] if keep_stages else [])
    else:
        img, inverted = np.round(np.clip(grey, 0, 1) * 255.0).astype(np.uint8), False
    if inverted:
        notes = notes + ["light strokes on a dark background were inverted"]
    if (img < 128).mean() < MIN_INK_FRACTION:
        raise IntakeError("image_blank", "the sketch has no visible strokes; draw dark lines on a light background")
    return SketchInput(image=img, kind=kind, source_mode=mode, inverted=inverted, notes=notes, intake=intake,
                       stages=stages)
