"""The CelebAMask-HQ label set used everywhere: masks, the semantic field, vertex groups.

Source: CelebAMask-HQ (Lee et al., CVPR 2020) label order, as used by pix2pix3D seg2face and S3D
(docs/design.md section 2).
"""
from __future__ import annotations

import numpy as np

#: Label names in id order (0..18).
LABEL_NAMES: tuple[str, ...] = (
    "background", "skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow", "l_ear", "r_ear",
    "mouth", "u_lip", "l_lip", "hair", "hat", "ear_r", "neck_l", "neck", "cloth",
)
NUM_CLASSES: int = len(LABEL_NAMES)
LABEL_IDS: dict[str, int] = {name: i for i, name in enumerate(LABEL_NAMES)}

#: Label id -> the id it becomes when the image is mirrored left-right (the person's left eye, brow and
#: ear become the right ones; every other label is its own mirror image). An involution.
MIRROR_IDS: tuple[int, ...] = tuple(
    LABEL_IDS[{"l_eye": "r_eye", "r_eye": "l_eye", "l_brow": "r_brow", "r_brow": "l_brow",
               "l_ear": "r_ear", "r_ear": "l_ear"}.get(name, name)] for name in LABEL_NAMES
)

#: The colour palette CelebAMask-HQ's colour-coded maps use (RGB uint8, one row per id).
PALETTE: np.ndarray = np.array(
    [
        [0, 0, 0], [204, 0, 0], [76, 153, 0], [204, 204, 0], [51, 51, 255], [204, 0, 204],
        [0, 255, 255], [255, 204, 204], [102, 51, 0], [255, 0, 0], [102, 204, 0], [255, 255, 0],
        [0, 0, 153], [0, 0, 204], [255, 51, 153], [0, 204, 204], [0, 51, 0], [255, 153, 51],
        [0, 204, 0],
    ],
    dtype=np.uint8,
)


def _checked_ids(mask: np.ndarray) -> np.ndarray:
    """``mask`` as an array; ValueError when an id is outside 0..18."""
    mask = np.asarray(mask)
    if mask.size and int(mask.max()) >= NUM_CLASSES:
        raise ValueError(f"label id {int(mask.max())} is outside the label set 0..{NUM_CLASSES - 1}")
    return mask


def mirror_mask(mask: np.ndarray) -> np.ndarray:
    """Mirror a label map left-right: ``(H, W)`` uint8 ids -> ``(H, W)`` uint8, columns reversed and the
    left/right labels swapped (:data:`MIRROR_IDS`), so it is the label map of the mirrored face.

    Raises:
        ValueError: if an id is outside 0..18.
    """
    mask = _checked_ids(mask)
    return np.ascontiguousarray(np.asarray(MIRROR_IDS, np.uint8)[mask[:, ::-1]])


def colorize(mask: np.ndarray) -> np.ndarray:
    """Label ids ``(H, W)`` uint8 in 0..18 -> RGB ``(H, W, 3)`` uint8 in the CelebAMask-HQ palette.

    Raises:
        ValueError: if an id is outside 0..18.
    """
    mask = _checked_ids(mask)
    return PALETTE[mask]
