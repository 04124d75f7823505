"""Mask intake (``--from-mask``): label maps as id images or palette-coloured images, in the job's label set
(backend/labels.py: CelebAMask-HQ for humans, the default; seg2cat, ids 0-5 and its palette, for cats).

Accepted (issue 6):

* id maps: a single-channel image (``L``, ``I;16``, ``I``, or a grey RGB image) whose values are label
  ids in the set's order (0..18 CelebAMask-HQ, 0..5 seg2cat); such maps look almost black;
* colour-coded maps in the set's palette (``LabelSet.palette``), RGB/RGBA or palette (``P``) images;
  anti-aliased or JPEG-damaged colours are snapped to the nearest palette entry (transparent pixels are
  background).

Errors are :class:`backend.sketch.intake.IntakeError` with stable codes: ``mask_id_out_of_range`` (an id
map with values above the set's last id), ``mask_colors_unknown`` (a colour map whose colours are far from the palette),
``mask_empty`` (all background), plus the image codes of sketch intake.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from backend.labels import CELEBAMASK_HQ, LabelSet
from backend.sketch.intake import MAX_SIDE_PX, MIN_SIDE_PX, IntakeError, open_image_bytes

#: A colour pixel farther than this (Euclidean RGB distance, 0..441) from every palette entry is unknown.
MAX_SNAP_DISTANCE = 60.0
#: Largest fraction of unknown-colour pixels tolerated (anti-aliasing between two palette colours).
MAX_UNKNOWN_FRACTION = 0.05


def load_mask(source: Any, labels: LabelSet | None = None) -> np.ndarray:
    """Read a label map of ``labels`` (default CelebAMask-HQ) from a path, image bytes, a Pillow image or a
    numpy array.

    Returns:
        ``(H, W)`` uint8 label ids ``0 .. labels.num_classes - 1`` in the input's own pixel frame.

    Raises:
        IntakeError: unreadable image, ids outside the set, colours that are not the set's palette, or a
            map with no foreground.
    """
    from PIL import Image

    labels = labels or CELEBAMASK_HQ
    if isinstance(source, np.ndarray):
        arr = np.asarray(source)
        if arr.ndim >= 2:
            _check_size(arr.shape[1], arr.shape[0])
        return _check(_from_array(arr, labels))
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise IntakeError("input_not_found", f"mask file {path} does not exist")
        source = path.read_bytes()
    if isinstance(source, (bytes, bytearray, memoryview)):
        source = open_image_bytes(bytes(source), "the mask", "give a PNG label map (ids 0-18) or a "
                                  "CelebAMask-HQ colour map")
    if isinstance(source, Image.Image):
        _check_size(source.size[0], source.size[1])
        return _check(_from_pil(source, labels))
    raise IntakeError("input_bad_type", f"cannot read a mask from a {type(source).__name__}")


def snap_to_palette(rgb: np.ndarray, labels: LabelSet | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Nearest palette entry (of ``labels``, default CelebAMask-HQ) of every pixel.

    Args:
        rgb: ``(H, W, 3)`` uint8 colours.

    Returns:
        ``(ids (H, W) uint8, distance (H, W) float32)``: the nearest entry's id and its RGB distance.
    """
    flat = rgb.reshape(-1, 3)
    colours, inverse = np.unique(flat, axis=0, return_inverse=True)  # few distinct colours: cheap
    palette = (labels or CELEBAMASK_HQ).palette
    d = np.linalg.norm(colours[:, None, :].astype(np.float32) - palette[None, :, :].astype(np.float32), axis=2)
    nearest = d.argmin(axis=1).astype(np.uint8)
    dist = d[np.arange(len(colours)), nearest]
    inverse = inverse.reshape(-1)
    return nearest[inverse].reshape(rgb.shape[:2]), dist[inverse].reshape(rgb.shape[:2]).astype(np.float32)


def _from_pil(im, labels: LabelSet) -> np.ndarray:
    mode = im.mode
    if mode in ("L", "I;16", "I;16L", "I;16B", "I;16N", "I", "1"):
        return _ids(np.asarray(im), labels)
    if mode == "P":
        im = im.convert("RGBA")
    elif mode not in ("RGB", "RGBA"):
        im = im.convert("RGB")
    rgb = np.asarray(im)
    if rgb.shape[-1] == 4:  # transparent pixels are background
        rgb = np.where(rgb[..., 3:4] < 128, labels.palette[0], rgb[..., :3]).astype(np.uint8)
    return _from_array(rgb, labels)


def _from_array(arr: np.ndarray, labels: LabelSet) -> np.ndarray:
    if arr.ndim == 2:
        return _ids(arr, labels)
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        rgb = arr[..., :3]
        if arr.dtype != np.uint8:
            raise IntakeError("input_bad_type", f"colour masks must be uint8, not {arr.dtype}")
        if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
            return _ids(rgb[..., 0], labels)  # a grey id map saved as RGB
        ids, dist = snap_to_palette(np.ascontiguousarray(rgb), labels)
        unknown = float((dist > MAX_SNAP_DISTANCE).mean())
        if unknown > MAX_UNKNOWN_FRACTION:
            raise IntakeError("mask_colors_unknown", f"{unknown:.0%} of the mask's pixels have colours far from the "
                              f"{labels.name} palette; give an id map (values 0-{labels.num_classes - 1}) or a map "
                              "in that palette")
        return ids
    raise IntakeError("input_bad_type", f"a mask must be (H, W) ids or (H, W, 3) colours, not shape {arr.shape}")


def _ids(a: np.ndarray, labels: LabelSet) -> np.ndarray:
    a = np.asarray(a)
    top_id = labels.num_classes - 1
    if a.dtype == bool:
        a = a.astype(np.uint8)
    if not np.issubdtype(a.dtype, np.integer):
        if not np.all(np.equal(np.mod(a, 1), 0)):
            raise IntakeError("mask_id_out_of_range", f"mask values must be whole label ids 0-{top_id}")
    top = int(a.max(initial=0))
    low = int(a.min(initial=0))
    if top > top_id or low < 0:
        raise IntakeError("mask_id_out_of_range", f"mask has label id {top if top > top_id else low}, but ids "
                          f"must be 0-{top_id} ({labels.name} order); a colour-coded map must use the "
                          f"{labels.name} palette")
    return a.astype(np.uint8)


def _check_size(w: int, h: int) -> None:
    """Size limits first, so a tiny or huge map gets the size error and not a colour or id error."""
    if min(h, w) < MIN_SIDE_PX:
        raise IntakeError("image_too_small", f"mask is {w}x{h} px; it needs at least {MIN_SIDE_PX} px a side")
    if max(h, w) > MAX_SIDE_PX:
        raise IntakeError("image_too_large", f"mask is {w}x{h} px; the largest accepted side is {MAX_SIDE_PX} px")


def _check(ids: np.ndarray) -> np.ndarray:
    _check_size(ids.shape[1], ids.shape[0])
    if not (ids > 0).any():
        raise IntakeError("mask_empty", "the mask is all background (id 0); label at least the face")
    return ids
