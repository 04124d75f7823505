"""Is a predicted face mask plausible? Warnings the user sees instead of a silent box of hair.

The sketch network always answers, even when the input was not what it was trained on: grey paper
or a sheet border read as hair gives a box of hair with a face pressed into it. :func:`check_mask`
measures a few things any head mask has (a face region of reasonable size near the middle, hair
around it rather than over the whole picture or along the picture's edges) and returns warnings
``{"code": snake_case, "message": what happened and what to try}`` for ``result.json``'s ``warnings``,
which the Blender add-on reports after import.

Label sets: the face checks run on the set's face class (``skin`` for humans, ``face``, the face fur, for
cats, :data:`FACE_CLASS`); the hair checks (``paper_read_as_hair``, ``hair_covers_picture``) need a
``hair`` class and are skipped for sets without one (seg2cat). The ``no_face`` sentence names the
subject's features.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from backend.labels import CELEBAMASK_HQ, LABEL_IDS, LabelSet

HAIR = LABEL_IDS["hair"]
SKIN = LABEL_IDS["skin"]
#: The class the face checks measure, per subject: human skin, the cat's face fur.
FACE_CLASS = {"human": "skin", "cat": "face"}
#: What ``no_face`` asks the user to draw, per subject.
NO_FACE_HINT = {"human": "draw the face outline, eyes, nose and mouth in dark lines",
                "cat": "draw the head outline, ears, eyes, nose and mouth in dark lines"}
#: Hair over more than this fraction of the picture is more than a head has ...
MAX_HAIR_FRACTION = 0.5
#: ... when (with the sketch known) at least this fraction of the picture is hair over blank paper: a
#: head of dense scribbled hair filling the picture is fine, hair over empty paper is not.
MIN_BLANK_HAIR = 0.15
#: Paper farther than this from any ink (fraction of the short side) is blank.
BLANK_DISTANCE = 0.04
#: A picture side counts as covered by hair when hair fills more than this fraction of its border strip.
SIDE_HAIR_FRACTION = 0.3
#: Paper read as hair: hair along at least this many of the 4 sides ...
MIN_HAIR_SIDES = 3
#: ... or over this fraction of the whole border strip.
MAX_BORDER_HAIR = 0.4
#: Border strip width, fraction of the short side.
BORDER_STRIP = 0.02
#: Skin below this fraction of the picture: no face.
MIN_FACE_FRACTION = 0.001
#: A face whose skin is shorter than this fraction of the picture height is tiny.
MIN_FACE_HEIGHT = 0.08
#: A face whose skin centroid is farther than this from the picture centre (fraction of the side) is off-centre.
MAX_FACE_OFFSET = 0.3
#: A second skin region at least this fraction of the largest one splits the face.
SPLIT_FACE_RATIO = 0.3


@dataclass
class MaskCheck:
    """Result of :func:`check_mask`.

    Attributes:
        warnings: ``[{"code": str, "message": str}]``, empty for a plausible mask.
        measures: the measured quantities (fractions of the picture, ``face_center`` as fractions of
            width and height), JSON-ready.
    """

    warnings: list[dict] = field(default_factory=list)
    measures: dict = field(default_factory=dict)

    @property
    def codes(self) -> list[str]:
        """The warning codes, in order."""
        return [w["code"] for w in self.warnings]


def check_mask(mask: np.ndarray, sketch: np.ndarray | None = None, labels: LabelSet = CELEBAMASK_HQ) -> MaskCheck:
    """Check a label map for the signs of a failed sketch -> mask prediction.

    Args:
        mask: ``(H, W)`` integer label ids (``backend.labels``), in the picture the user gave (the
            input's pixel frame) or the framed square.
        sketch: optional ``(H, W)`` uint8 sketch in the same frame (dark ink < 128 on white). With it,
            the hair warnings also need hair over blank paper (away from any ink), so a drawing whose
            dense hair really fills the picture is not flagged.
        labels: the set of ``mask``'s ids (default CelebAMask-HQ); without a ``hair`` class (seg2cat) the hair
            warnings and measures are skipped.

    Returns:
        :class:`MaskCheck` with warnings (codes ``paper_read_as_hair``, ``hair_covers_picture``,
        ``no_face``, ``face_tiny``, ``face_off_centre``, ``face_split``) and the measures.

    Raises:
        ValueError: ``mask`` is not 2-D or is empty, or ``sketch`` has another shape.
    """
    m = np.asarray(mask)
    if m.ndim != 2 or m.size == 0:
        raise ValueError(f"check_mask needs a non-empty (H, W) label map, not shape {m.shape}")
    if sketch is not None and np.shape(sketch) != m.shape:
        raise ValueError(f"sketch shape {np.shape(sketch)} differs from the mask's {m.shape}")
    skin = m == labels.ids[FACE_CLASS.get(labels.subject, "skin")]
    face_fraction = float(skin.mean())
    meas: dict = {"face_fraction": round(face_fraction, 4)}
    warnings = _hair_check(m == labels.ids["hair"], sketch, meas) if "hair" in labels.ids else []
    if face_fraction < MIN_FACE_FRACTION:
        hint = NO_FACE_HINT.get(labels.subject, NO_FACE_HINT["human"])
        warnings.append({"code": "no_face", "message": f"no face ({FACE_CLASS.get(labels.subject, 'skin')}) region "
                         f"was found: {hint}, and check the picture is the right way up"})
        return MaskCheck(warnings, meas)
    warnings += _face_warnings(skin, meas)
    return MaskCheck(warnings, meas)


def _hair_check(hair: np.ndarray, sketch: np.ndarray | None, meas: dict) -> list[dict]:
    """The hair measures (into ``meas``) and warnings of :func:`check_mask`; with the sketch they also need
    hair over blank paper."""
    border_hair, hair_sides = _border_hair(hair)
    hair_fraction = float(hair.mean())
    meas.update(hair_fraction=round(hair_fraction, 4), hair_border_fraction=round(border_hair, 4),
                hair_sides=hair_sides)
    if sketch is not None:
        blank_hair = _hair_over_blank_paper(hair, sketch)
        meas["hair_over_blank_paper"] = round(blank_hair, 4)
        if blank_hair < MIN_BLANK_HAIR:
            return []
    return _hair_warnings(hair_sides, border_hair, hair_fraction)


def _border_hair(hair: np.ndarray) -> tuple[float, list[str]]:
    """The fraction of the border strip that is hair, and the picture sides mostly covered by hair."""
    h, w = hair.shape
    s = max(1, round(BORDER_STRIP * min(h, w)))
    sides = {"top": hair[:s, :], "bottom": hair[-s:, :], "left": hair[:, :s], "right": hair[:, -s:]}
    side_frac = {k: float(v.mean()) for k, v in sides.items()}
    border = np.ones((h, w), bool)
    border[s:h - s, s:w - s] = False
    return float(hair[border].mean()), [k for k, v in side_frac.items() if v > SIDE_HAIR_FRACTION]


def _hair_over_blank_paper(hair: np.ndarray, sketch: np.ndarray) -> float:
    """The fraction of the picture that is hair farther than ``BLANK_DISTANCE`` from any ink."""
    h, w = hair.shape
    ink = (np.asarray(sketch) < 128).astype(np.uint8)
    dist = cv2.distanceTransform(1 - ink, cv2.DIST_L2, 3)
    return float((hair & (dist > BLANK_DISTANCE * min(h, w))).mean())


def _hair_warnings(hair_sides: list[str], border_hair: float, hair_fraction: float) -> list[dict]:
    """``paper_read_as_hair`` and ``hair_covers_picture``."""
    warnings = []
    if len(hair_sides) >= MIN_HAIR_SIDES or border_hair > MAX_BORDER_HAIR:
        warnings.append({"code": "paper_read_as_hair", "message":
                         f"the paper background was read as hair (hair along {len(hair_sides)} of the 4 picture "
                         f"edges, {border_hair:.0%} of the border): crop closer to the drawing or raise the contrast, "
                         "and erase borders, shadows or marks near the edges"})
    if hair_fraction > MAX_HAIR_FRACTION:
        warnings.append({"code": "hair_covers_picture", "message":
                         f"hair covers {hair_fraction:.0%} of the picture, more than a head has: crop closer to the "
                         "head or raise the contrast so the paper is white and the lines dark"})
    return warnings


def _face_warnings(skin: np.ndarray, meas: dict) -> list[dict]:
    """Measure the largest skin region (into ``meas``): ``face_tiny``, ``face_off_centre``, ``face_split``."""
    h, w = skin.shape
    _, _, stats, cents = cv2.connectedComponentsWithStats(skin.astype(np.uint8), connectivity=8)
    order = np.argsort(-stats[1:, cv2.CC_STAT_AREA]) + 1
    big = order[0]
    areas = stats[order, cv2.CC_STAT_AREA]
    cx, cy = cents[big]
    face_h = float(stats[big, cv2.CC_STAT_HEIGHT]) / h
    meas.update(face_height=round(face_h, 4), face_center=[round(float(cx) / w, 4), round(float(cy) / h, 4)],
                face_regions=int(sum(a >= SPLIT_FACE_RATIO * areas[0] for a in areas)))
    warnings = []
    if face_h < MIN_FACE_HEIGHT:
        warnings.append({"code": "face_tiny", "message": f"the face is tiny ({face_h:.0%} of the picture height): "
                         "crop closer to the head, or draw it larger"})
    off = max(abs(cx / w - 0.5), abs(cy / h - 0.5))
    if off > MAX_FACE_OFFSET:
        warnings.append({"code": "face_off_centre", "message": "the face is far from the middle of the picture: "
                         "crop so the head is in the middle, or erase other drawings on the sheet"})
    if meas["face_regions"] > 1:
        warnings.append({"code": "face_split", "message": f"the face is split into {meas['face_regions']} "
                         "separate regions: close the face outline and check nothing is drawn across the face"})
    return warnings
