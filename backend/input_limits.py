"""Limits checked on a job's input before any expensive work: the guarded intake used by the pipeline and
the job server.

* stroke documents: every stroke's drawn width (``width`` and each of ``widths``) must be
  0..``MAX_STROKE_WIDTH_PX`` pixels of the 512 px raster, and every coordinate within
  ``MAX_COORD_EXTENTS`` frame extents of the image (else ``stroke_bad_width`` / ``stroke_out_of_range``;
  a width of 64 units or more used to end in an uncaught OpenCV error);
* images: the header is read first (Pillow's ``Image.open`` reads only the header) and an image of more
  than ``MAX_DECODE_PIXELS`` pixels is refused (``image_too_large``) before a pixel is decoded, except a
  JPEG sketch, which is decoded at 1/2, 1/4 or 1/8 scale (``Image.draft``) to fit; a decoded sketch over
  ``MAX_SKETCH_PIXELS`` is reduced before it is converted to grey (its pixel frame, and so ``mask.png``,
  is then the reduced one; ``notes`` says so); an animated or
  multi-frame image is refused (``image_multi_frame``); bytes that are not an image get a plain
  "not an image" sentence (``image_unreadable``).

Type errors are left to the decoders (``backend/sketch``, ``backend/mask_intake.py``), so their codes stay.
"""
from __future__ import annotations

import io
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from backend.sketch.intake import MAX_SIDE_PX, STROKE_RASTER_PX, IntakeError, SketchInput, load_sketch

#: Largest image decoded, in pixels (4096 x 4096). The networks see 512 x 512; decoding an RGB image
#: costs about 45 bytes per pixel on the way to grey (float64 arrays): 0.77 GB measured at the cap.
MAX_DECODE_PIXELS = 16_777_216
#: Larger sketches are reduced (box filter, whole factor) to at most this many pixels right after decoding,
#: before the float64 grey conversion: that conversion then costs at most about 0.2 GB.
MAX_SKETCH_PIXELS = 4_194_304
#: Widest stroke drawn, in pixels of the ``STROKE_RASTER_PX`` raster (an eighth of the sketch's height).
MAX_STROKE_WIDTH_PX = 64.0
#: Coordinates may lie this many frame widths / heights outside the image (they are clipped when drawn).
MAX_COORD_EXTENTS = 10.0
HINT_SKETCH = "give a PNG, JPEG or WebP sketch"
HINT_MASK = "give a PNG label map (ids 0-18) or a CelebAMask-HQ colour map"


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check_strokes(doc: Any) -> None:
    """Check the numeric ranges of a stroke document (docs/contracts.md section 2) before it is drawn.

    Widths are in the frame's units (pixels for frame ``image``, a fraction of the height for
    ``normalized``) and are checked as drawn, in pixels of the ``STROKE_RASTER_PX`` raster.

    Raises:
        IntakeError: ``stroke_bad_width`` (a width or an entry of ``widths`` that is NaN, infinite,
            negative or wider than ``MAX_STROKE_WIDTH_PX`` drawn pixels), ``stroke_out_of_range`` (a
            coordinate more than ``MAX_COORD_EXTENTS`` frame extents outside the image). Malformed
            documents pass through to the rasteriser, which names the mistake.
    """
    if not isinstance(doc, dict) or not isinstance(doc.get("strokes"), list):
        return
    if doc.get("frame", "normalized") == "image":
        w, h = doc.get("width"), doc.get("height")
        if not (_number(w) and _number(h) and 0 < w < 1e6 and 0 < h < 1e6):
            return  # the rasteriser reports strokes_bad_size
        w, h = float(w), float(h)
    else:
        w = h = 1.0
    scale = STROKE_RASTER_PX / max(w, h)  # units -> raster pixels
    top = MAX_STROKE_WIDTH_PX / scale
    for k, stroke in enumerate(doc["strokes"]):
        if not isinstance(stroke, dict):
            continue
        width = stroke.get("width")
        if _number(width) and not (math.isfinite(width) and 0 <= width <= top):
            raise IntakeError("stroke_bad_width", f"stroke {k}: 'width' {width!r} is outside 0..{top:g} (at most "
                              f"{MAX_STROKE_WIDTH_PX:g} px of the {STROKE_RASTER_PX} px sketch)")
        widths = stroke.get("widths")
        if isinstance(widths, list) and widths and all(_number(v) for v in widths):
            a = np.asarray(widths, dtype=np.float64)
            if not (np.isfinite(a).all() and (a >= 0).all() and (a <= top).all()):
                raise IntakeError("stroke_bad_width", f"stroke {k}: every entry of 'widths' must be 0..{top:g} "
                                  f"(at most {MAX_STROKE_WIDTH_PX:g} px of the {STROKE_RASTER_PX} px sketch)")
        pts = stroke.get("points")
        if not isinstance(pts, list) or not pts:
            continue
        try:
            a = np.asarray(pts, dtype=np.float64)
        except (TypeError, ValueError, OverflowError):
            continue  # the rasteriser reports stroke_bad_points
        if a.ndim != 2 or a.shape[1] != 2 or not np.isfinite(a).all():
            continue  # stroke_bad_points / stroke_not_finite from the rasteriser
        lo_x, hi_x = -MAX_COORD_EXTENTS * w, (1 + MAX_COORD_EXTENTS) * w
        lo_y, hi_y = -MAX_COORD_EXTENTS * h, (1 + MAX_COORD_EXTENTS) * h
        if (a[:, 0] < lo_x).any() or (a[:, 0] > hi_x).any() or (a[:, 1] < lo_y).any() or (a[:, 1] > hi_y).any():
            raise IntakeError("stroke_out_of_range", f"stroke {k} has points far outside the image (x must be "
                              f"{lo_x:g}..{hi_x:g}, y {lo_y:g}..{hi_y:g} in the frame's units)")


def open_image_checked(data: bytes, where: str, hint: str, draft_to: int | None = None):
    """Read an image's header, check its limits, then decode it; return the loaded ``PIL.Image.Image``.

    Args:
        data: the file's bytes; where: names it in messages; hint: what to give instead.
        draft_to: a JPEG over this many pixels is decoded at 1/2, 1/4 or 1/8 scale towards it
            (``Image.draft``), and is refused only if still over ``MAX_DECODE_PIXELS`` at 1/8 (sketches;
            never label maps, whose ids must not be blended).

    Raises:
        IntakeError: ``image_unreadable`` (empty, not an image, truncated), ``image_too_large`` (more than
            ``MAX_DECODE_PIXELS`` pixels, from the header), ``image_multi_frame`` (animated GIF / PNG /
            WebP, multi-page TIFF).
    """
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise IntakeError("image_unreadable", f"{where} is empty; {hint}")
    try:
        im = Image.open(io.BytesIO(data))  # reads the header only
        w, h = im.size
    except Image.DecompressionBombError:
        raise IntakeError("image_too_large", f"{where} declares too many pixels; the largest accepted image "
                          f"has {MAX_DECODE_PIXELS / 1e6:.1f} megapixels, scale it down") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError):
        raise IntakeError("image_unreadable", f"{where} is not an image (not a PNG, JPEG, WebP, BMP, TIFF or "
                          f"GIF file Pillow can read); {hint}") from None
    if max(w, h) > MAX_SIDE_PX:
        raise IntakeError("image_too_large", f"{where} is {w}x{h} px; the largest accepted side is {MAX_SIDE_PX} "
                          "px, scale it down")
    k = 1
    if draft_to and im.format == "JPEG":
        while w * h > draft_to * k * k and k < 8:
            k *= 2
    if w * h > MAX_DECODE_PIXELS * k * k:
        raise IntakeError("image_too_large", f"{where} is {w}x{h} px ({w * h / 1e6:.1f} megapixels); the "
                          f"largest accepted image has {MAX_DECODE_PIXELS / 1e6:.1f} megapixels, scale it down")
    if k > 1:
        im.draft(im.mode, (math.ceil(w / k), math.ceil(h / k)))  # DCT scaling: decoded small, never full size
    try:
        frames = bool(getattr(im, "is_animated", False)) or getattr(im, "n_frames", 1) > 1
    except (OSError, ValueError, EOFError, SyntaxError):
        frames = False  # a damaged later frame: decoding the first one reports it
    if frames:
        raise IntakeError("image_multi_frame", f"{where} has several frames (an animation or a multi-page file); "
                          f"save the one frame you mean as a single image; {hint}")
    try:
        im.load()
    except Image.DecompressionBombError:
        raise IntakeError("image_too_large", f"{where} declares too many pixels; scale it down") from None
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        raise IntakeError("image_unreadable", f"{where} could not be decoded ({e}); {hint}") from None
    return im


def _reduce(im):
    """A decoded sketch over ``MAX_SKETCH_PIXELS`` -> reduced by a whole factor (box filter), and a note."""
    w, h = im.size
    if w * h <= MAX_SKETCH_PIXELS:
        return im, None
    k = math.ceil(math.sqrt(w * h / MAX_SKETCH_PIXELS))
    if im.mode not in ("L", "LA", "RGB", "RGBA", "I", "F"):
        im = im.convert("RGBA" if im.mode in ("P", "PA") or "transparency" in im.info else
                        ("I" if im.mode.startswith("I;16") else "RGB"))
    small = im.reduce(k)
    small.info.update(im.info)  # keep EXIF orientation for the intake
    return small, f"downsampled from {w}x{h} to {small.size[0]}x{small.size[1]} px while reading"


def _read(source: Any) -> tuple[Any, str, bool]:
    """A path becomes its bytes, its name for messages and whether it is a ``.json`` file; other sources
    pass through."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise IntakeError("input_not_found", f"input file {path} does not exist")
        return path.read_bytes(), path.name, path.suffix.lower() == ".json"
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), "the uploaded data", False
    return source, "input", False


def load_sketch_checked(source: Any, **kwargs: Any) -> SketchInput:
    """:func:`backend.sketch.intake.load_sketch` behind the limits of this module (``kwargs`` pass through).

    Raises:
        IntakeError: the limit codes above, and every code of ``load_sketch``.
    """
    data, where, is_json = _read(source)
    if isinstance(data, bytes):
        if is_json or data.lstrip()[:1] == b"{":
            try:
                doc = json.loads(data.decode("utf-8"))
            except (UnicodeDecodeError, ValueError, RecursionError):
                return load_sketch(data, **kwargs)  # its parser names the mistake
            check_strokes(doc)
            return load_sketch(doc, **kwargs)
        im = open_image_checked(data, where, HINT_SKETCH, draft_to=MAX_SKETCH_PIXELS)
        im, note = _reduce(im)
        sk = load_sketch(im, **kwargs)
        if note:
            sk.notes.append(note)
        return sk
    if isinstance(data, dict):
        check_strokes(data)
    return load_sketch(data, **kwargs)


def load_mask_checked(source: Any, labels: Any = None) -> np.ndarray:
    """:func:`backend.mask_intake.load_mask` (in ``labels``' ids or palette, a
    :class:`backend.labels.LabelSet`; None = CelebAMask-HQ) behind the image limits of this module.

    Raises:
        IntakeError: the limit codes above, and every code of ``load_mask``.
    """
    from backend.mask_intake import load_mask

    data, where, _ = _read(source)
    if isinstance(data, bytes):
        return load_mask(open_image_checked(data, "the mask" if where == "the uploaded data" else where, HINT_MASK),
                         labels)
    return load_mask(data, labels)
