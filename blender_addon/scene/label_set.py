"""The label sets, as the add-on needs them (names for vertex groups, palettes for masks): CelebAMask-HQ
for humans and pix2pix3D's seg2cat for cats.

A copy of ``backend/labels.py`` (the add-on must not import the backend package, which lives in
another Python environment); ``tests/test_addon.py`` checks that both stay equal.
Sources: CelebAMask-HQ (Lee et al., CVPR 2020) label order, as used by pix2pix3D seg2face and S3D;
pix2pix3D seg2cat (Deng et al., CVPR 2023) for cats.
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


#: seg2cat's names in id order (0..5) and palette (background white), as ``backend.labels.CAT``.
CAT_NAMES: tuple[str, ...] = ("background", "face", "ear", "mouth", "eyes", "whiskers")
CAT_PALETTE: np.ndarray = np.array(
    [[255, 255, 255], [204, 0, 0], [76, 153, 0], [204, 204, 0], [51, 51, 255], [204, 0, 204]], dtype=np.uint8)

#: Subject (the job option ``subject``) -> (label set name, names in id order, palette).
SUBJECT_SETS: dict[str, tuple[str, tuple[str, ...], np.ndarray]] = {
    "human": ("celebamask-hq-19", LABEL_NAMES, PALETTE),
    "cat": ("seg2cat", CAT_NAMES, CAT_PALETTE),
}


def names_for(subject: str = "human") -> tuple[str, ...]:
    """Label names in id order of ``subject`` (``human`` | ``cat``; an unknown one is human)."""
    return SUBJECT_SETS.get(subject, SUBJECT_SETS["human"])[1]


def palette_for(subject: str = "human") -> np.ndarray:
    """``(K, 3)`` uint8 palette of ``subject`` (``human`` | ``cat``; an unknown one is human)."""
    return SUBJECT_SETS.get(subject, SUBJECT_SETS["human"])[2]


def names_for_label_set(name: str | None) -> tuple[str, ...]:
    """Label names of a result.json ``label_set`` (``celebamask-hq-19`` | ``seg2cat``); None or unknown
    (results written before the subject option) is the human set."""
    for set_name, names, _ in SUBJECT_SETS.values():
        if set_name == name:
            return names
    return LABEL_NAMES


def colour_to_ids(rgb: np.ndarray, subject: str = "human") -> np.ndarray:
    """Colour-coded mask ``(H, W, 3)`` uint8 (or float in [0, 1]) in ``subject``'s palette -> label ids
    ``(H, W)`` uint8.

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
    dist = ((uniq[:, None, :] - palette_for(subject).astype(np.int64)[None]) ** 2).sum(-1)  # (U, K)
    return dist.argmin(1).astype(np.uint8)[inverse].reshape(rgb.shape[:2])
