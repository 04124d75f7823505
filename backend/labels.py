"""The CelebAMask-HQ label set used everywhere: masks, the semantic field, vertex groups.

Source: CelebAMask-HQ (Lee et al., CVPR 2020) label order, as used by pix2pix3D seg2face and S3D
(docs/design.md section 2).
"""
from __future__ import annotations

from dataclasses import dataclass

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


# ---- label sets by subject ------------------------------------------------------------------------
# The constants above are the human (CelebAMask-HQ) set and keep their names and values. A LabelSet
# describes any set the data engines and, later, the backend can work with (docs/syncat.md for the cat set).

@dataclass(frozen=True, eq=False)
class LabelSet:
    """A semantic label set: names in id order, colour palette and left/right mirror table.

    Attributes:
        name: the manifest's ``label_set`` string (``"celebamask-hq-19"``, ``"seg2cat"``).
        subject: what it labels (``"human"``, ``"cat"``).
        names: label names in id order (id 0 is the background).
        palette: ``(num_classes, 3)`` uint8 RGB colour per id.
        mirror_ids: id -> its id in the left-right mirrored image (an involution).
        source: where the order and colours come from.
    """

    name: str
    subject: str
    names: tuple[str, ...]
    palette: np.ndarray
    mirror_ids: tuple[int, ...]
    source: str

    @property
    def num_classes(self) -> int:
        """Number of labels (ids 0 .. num_classes - 1)."""
        return len(self.names)

    @property
    def ids(self) -> dict[str, int]:
        """Label name -> id."""
        return {n: i for i, n in enumerate(self.names)}

    def colorize(self, mask: np.ndarray) -> np.ndarray:
        """Label ids ``(H, W)`` uint8 -> RGB ``(H, W, 3)`` uint8 in this set's palette.

        Raises:
            ValueError: if an id is outside ``0 .. num_classes - 1``.
        """
        mask = np.asarray(mask)
        if mask.size and int(mask.max()) >= self.num_classes:
            raise ValueError(f"label id {int(mask.max())} is outside the {self.name} set 0..{self.num_classes - 1}")
        return self.palette[mask]

    def mirror_mask(self, mask: np.ndarray) -> np.ndarray:
        """Mirror a label map ``(H, W)`` uint8 left-right, swapping left/right labels (:attr:`mirror_ids`).

        Raises:
            ValueError: if an id is outside ``0 .. num_classes - 1``.
        """
        mask = np.asarray(mask)
        if mask.size and int(mask.max()) >= self.num_classes:
            raise ValueError(f"label id {int(mask.max())} is outside the {self.name} set 0..{self.num_classes - 1}")
        return np.ascontiguousarray(np.asarray(self.mirror_ids, np.uint8)[mask[:, ::-1]])


#: The human set above as a LabelSet (the same tuples and array).
CELEBAMASK_HQ = LabelSet("celebamask-hq-19", "human", LABEL_NAMES, PALETTE, MIRROR_IDS,
                         "CelebAMask-HQ (Lee et al., CVPR 2020), as pix2pix3D seg2face uses it")

#: pix2pix3D's seg2cat classes (AFHQ-cat masks, ``afhqcat_seg_6c``): the button names of its seg2cat demo
#: (applications/demo/ui_qt/ui_clean.py ``Ui_Form_Seg2cat``) and the first six colours of its
#: ``training/utils.py`` ``color_list`` (background drawn white there). No left/right classes.
CAT = LabelSet("seg2cat", "cat", ("background", "face", "ear", "mouth", "eyes", "whiskers"),
               np.array([[255, 255, 255], [204, 0, 0], [76, 153, 0], [204, 204, 0], [51, 51, 255], [204, 0, 204]],
                        dtype=np.uint8),
               (0, 1, 2, 3, 4, 5), "pix2pix3D seg2cat (Deng et al., CVPR 2023), dunbar12138/pix2pix3D")

#: Every label set by its manifest name.
LABEL_SETS: dict[str, LabelSet] = {s.name: s for s in (CELEBAMASK_HQ, CAT)}


def label_set(name: str) -> LabelSet:
    """The :class:`LabelSet` of a manifest's ``label_set`` name.

    Raises:
        KeyError: an unknown name (the message lists the known ones).
    """
    try:
        return LABEL_SETS[name]
    except KeyError:
        raise KeyError(f"unknown label set {name!r}; known: {', '.join(sorted(LABEL_SETS))}") from None
