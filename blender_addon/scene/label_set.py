"""The CelebAMask-HQ label set, as the add-on needs it (names for vertex groups, palette for masks).

A copy of ``backend/labels.py`` (the add-on must not import the backend package, which lives in
another Python environment); ``tests/test_addon.py`` checks that both stay equal.
Source: CelebAMask-HQ (Lee et al., CVPR 2020) label order, as used by pix2pix3D seg2face and S3D.
"""
from __future__ import annotations

import numpy as np

#: Label names in id order (0..18); vertex groups use these names.
LABEL_NAMES: tuple[str, ...] = (
    "background", "skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow", "l_ear", "r_ear",
    "mouth", "u_lip", "l_lip", "hair", "hat", "ear_r", "neck_l", "neck", "cloth",
)
NUM_CLASSES: int = len(LABEL_NAMES)

#: CelebAMask-HQ colour palette, RGB uint8, one row per label id.
PALETTE: np.ndarray = np.array(
    [
        [0, 0, 0], [204, 0, 0], [76, 153, 0], [204, 204, 0], [51, 51, 255], [204, 0, 204],
        [0, 255, 255], [255, 204, 204], [102, 51, 0], [255, 0, 0], [102, 204, 0], [255, 255, 0],
        [0, 0, 153], [0, 0, 204], [255, 51, 153], [0, 204, 204], [0, 51, 0], [255, 153, 51],
        [0, 204, 0],
    ],
    dtype=np.uint8,
)


def colour_to_ids(rgb: np.ndarray) -> np.ndarray:
    """Colour-coded mask ``(H, W, 3)`` uint8 (or float in [0, 1]) -> label ids ``(H, W)`` uint8.

    Each pixel takes the id of the nearest palette colour (Euclidean RGB distance), so soft brush
    edges painted by the user snap to a class instead of producing invalid colours.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] < 3:
        raise ValueError(f"a colour mask must be (H, W, 3), got shape {rgb.shape}")
    if rgb.dtype.kind == "f":
        rgb = np.clip(np.round(rgb[..., :3] * 255.0), 0, 255)
    rgb8 = rgb[..., :3].astype(np.int64)
    packed = (rgb8[..., 0] << 16) | (rgb8[..., 1] << 8) | rgb8[..., 2]
    colours, inverse = np.unique(packed.ravel(), return_inverse=True)  # few distinct colours
    uniq = np.stack([(colours >> 16) & 255, (colours >> 8) & 255, colours & 255], axis=1)
    dist = ((uniq[:, None, :] - PALETTE.astype(np.int64)[None]) ** 2).sum(-1)  # (U, 19)
    return dist.argmin(1).astype(np.uint8)[inverse].reshape(rgb.shape[:2])
