"""Face landmarks of a label map for the second framing pass (backend/align.py): where the eyes, the
mouth and the head box (head top, chin, face centre) are in a mask, and where they belong in the
canonical framing, per label set.

Each label set with an entry in :data:`LANDMARK_CLASSES` has its own canonical places, measured on that
set's synthetic ground-truth masks with the same definitions (:func:`mask_landmarks`,
:func:`mask_head_box`; ``s3d-data framing DIR --out FILE``, training/synhead/writer.py
``canonical_landmarks``): celebamask-hq-19 on SynHead heads, seg2cat on SynCat cats. Both are looked up
by the set's name: the Python defaults in :data:`CANONICAL_DEFAULTS`, overridden by the set's JSON file
in :data:`CANONICAL_FRAMING_FILES` (keys ``eye_center``, ``eye_mouth_distance`` and ``head_box``) when it
holds valid values. :data:`LANDMARK_REFRAMING` switches the second pass on or off per set.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from backend.labels import CAT, CELEBAMASK_HQ, LABEL_IDS, LabelSet

_HERE = Path(__file__).resolve().parent
#: The canonical framing file of each label set (in backend/). The human file also holds the median sketch
#: content box that the first framing pass reads for every set (backend/align.py ``canonical_content_box``).
CANONICAL_FRAMING_FILES: dict[str, str] = {CELEBAMASK_HQ.name: "canonical_framing.json",
                                           CAT.name: "canonical_framing_seg2cat.json"}
#: Where the SynHead generator writes the framing statistics of its sketches (also backend/align.py's).
CANONICAL_FRAMING_PATH = _HERE / CANONICAL_FRAMING_FILES[CELEBAMASK_HQ.name]
#: Landmark placement in the input view (normalised, y down): centroid of the eye classes (l_eye, r_eye)
#: and its distance to the centroid of the mouth classes (mouth, u_lip, l_lip). Medians over the first 300
#: SynHead v1 front masks (eye centre (0.503, 0.380), distance 0.153, 10-90 % range 0.133-0.177; x is set
#: to 0.5, the centre of the symmetric random shift).
DEFAULT_CANONICAL_LANDMARKS = {"eye_center": [0.5, 0.380], "eye_mouth_distance": 0.153,
                               "source": "defaults in backend/align.py (300 SynHead v1 masks)"}
#: Fallback when eyes or mouth are missing: the head box of the mask. Medians over the first 300 SynHead
#: v1 masks: top of the head classes (ids 1-15) at y 0.113, bottom of the face classes (the chin) at
#: 0.684, face centre x 0.502 (set to 0.5).
DEFAULT_CANONICAL_HEAD_BOX = {"top": 0.113, "chin": 0.684, "center_x": 0.5}
#: Cat landmarks (normalised, y down): centroid of ``eyes`` and its distance to the centroid of ``mouth``
#: (nose pad, philtrum, mouth line). Medians over the 2,620 SynCat 0.1.0 train-split masks (seeds >= 200;
#: ``s3d-data framing /work/data/syncat --split train --out backend/canonical_framing_seg2cat.json``):
#: eye centre (0.4997, 0.4587), distance 0.1551, 10-90 % range 0.1381-0.1740; x set to 0.5 as above. The
#: eyes sit lower than a human's (0.459 vs 0.380): SynCat places the ear tips where SynHead's crown is.
CAT_CANONICAL_LANDMARKS = {"eye_center": [0.5, 0.4587], "eye_mouth_distance": 0.1551,
                           "source": "defaults in backend/align_landmarks.py (2,620 SynCat train masks)"}
#: Cat head box, same masks: top of the head classes (the ear tips) at y 0.1113, bottom of the face
#: classes (eyes, mouth, whisker pads: the bottom of the muzzle) at 0.6953, their centre x 0.4998 (set
#: to 0.5).
CAT_CANONICAL_HEAD_BOX = {"top": 0.1113, "chin": 0.6953, "center_x": 0.5}
#: Defaults per label set name: ``(landmarks, head box)``.
CANONICAL_DEFAULTS: dict[str, tuple[dict, dict]] = {
    CELEBAMASK_HQ.name: (DEFAULT_CANONICAL_LANDMARKS, DEFAULT_CANONICAL_HEAD_BOX),
    CAT.name: (CAT_CANONICAL_LANDMARKS, CAT_CANONICAL_HEAD_BOX),
}
#: The head's classes, skin .. ear_r (hair and hat included; neck, cloth and background not).
HEAD_IDS = tuple(range(LABEL_IDS["skin"], LABEL_IDS["ear_r"] + 1))
#: The face proper: its bottom row is the chin.
FACE_IDS = tuple(LABEL_IDS[n] for n in ("skin", "nose", "l_eye", "r_eye", "l_brow", "r_brow", "mouth", "u_lip",
                                        "l_lip"))
EYE_IDS = (LABEL_IDS["l_eye"], LABEL_IDS["r_eye"])
MOUTH_IDS = (LABEL_IDS["mouth"], LABEL_IDS["u_lip"], LABEL_IDS["l_lip"])
#: Cat head: every class but background (face fur, ears, mouth, eyes, whisker pads); its top row is the
#: ear tips.
CAT_HEAD_IDS = tuple(CAT.ids[n] for n in ("face", "ear", "mouth", "eyes", "whiskers"))
#: Cat "face" for the head box: eyes, mouth and whisker pads, not the ``face`` fur class, which also
#: covers the neck and chest down to the page edge in over half of the SynCat masks (its bottom row is no
#: chin). The bottom of these classes is the bottom of the muzzle and their mean column the face's centre
#: line; (bottom - top) / eye-mouth distance varies 3.37-4.24 (10-90 %) over SynCat, with the fur class
#: 3.91-6.27.
CAT_FACE_IDS = tuple(CAT.ids[n] for n in ("mouth", "eyes", "whiskers"))
#: The classes of the landmarks, per label set name; a set without an entry gets no landmark or head-box
#: reframing and keeps the content-box framing.
LANDMARK_CLASSES: dict[str, dict[str, tuple[int, ...]]] = {
    CELEBAMASK_HQ.name: {"eye": EYE_IDS, "mouth": MOUTH_IDS, "head": HEAD_IDS, "face": FACE_IDS},
    CAT.name: {"eye": (CAT.ids["eyes"],), "mouth": (CAT.ids["mouth"],), "head": CAT_HEAD_IDS,
               "face": CAT_FACE_IDS},
}
#: The switch of the second framing pass per label set name (backend/align.py ``refine_with_landmarks``
#: for sketches, ``frame_mask`` for label-map inputs): False keeps that set on the content-box framing.
LANDMARK_REFRAMING: dict[str, bool] = {CELEBAMASK_HQ.name: True, CAT.name: True}
#: Fewest pixels (at 512^2) a landmark class needs to count as found.
MIN_LANDMARK_PIXELS = 12


def landmark_reframing(labels: LabelSet = CELEBAMASK_HQ) -> bool:
    """Whether masks of ``labels`` get the second (landmark / head-box) framing pass: the set has landmark
    classes and its :data:`LANDMARK_REFRAMING` switch is on."""
    return bool(LANDMARK_REFRAMING.get(labels.name, False)) and labels.name in LANDMARK_CLASSES


def canonical_framing_path(labels: LabelSet = CELEBAMASK_HQ) -> Path:
    """The canonical framing JSON of ``labels`` (:data:`CANONICAL_FRAMING_FILES`).

    Raises:
        KeyError: a set without canonical framing statistics.
    """
    return _HERE / CANONICAL_FRAMING_FILES[labels.name]


def canonical_landmarks(path: str | Path | None = None, labels: LabelSet = CELEBAMASK_HQ) -> dict:
    """``{"eye_center": [x, y], "eye_mouth_distance": d, "source"}`` of ``labels`` in normalised input-view
    coords (y down).

    ``eye_center`` / ``eye_mouth_distance`` keys of ``path`` (default the set's
    :func:`canonical_framing_path`) override the set's defaults (:data:`CANONICAL_DEFAULTS`).

    Raises:
        KeyError: a set without canonical framing statistics.
    """
    defaults = CANONICAL_DEFAULTS[labels.name][0]
    path = Path(path) if path is not None else canonical_framing_path(labels)
    try:
        data = json.loads(path.read_text())
        ex, ey = (float(v) for v in data["eye_center"])
        d = float(data["eye_mouth_distance"])
        if not (0.02 < d < 0.6 and 0 < ex < 1 and 0 < ey < 1):
            raise ValueError("landmarks out of range")
        return {"eye_center": [ex, ey], "eye_mouth_distance": d, "source": str(path.name)}
    except (OSError, ValueError, KeyError, TypeError):
        return dict(defaults)


def canonical_head_box(labels: LabelSet = CELEBAMASK_HQ, path: str | Path | None = None) -> dict:
    """``{"top": y, "chin": y, "center_x": x}`` of ``labels``, normalised input-view coords (y down).

    A ``head_box`` object with those keys in ``path`` (default the set's :func:`canonical_framing_path`)
    overrides the set's defaults (:data:`CANONICAL_DEFAULTS`).

    Raises:
        KeyError: a set without canonical framing statistics.
    """
    defaults = CANONICAL_DEFAULTS[labels.name][1]
    path = Path(path) if path is not None else canonical_framing_path(labels)
    try:
        box = json.loads(path.read_text())["head_box"]
        top, chin, cx = (float(box[k]) for k in ("top", "chin", "center_x"))
        if not (0 <= top < chin <= 1 and 0 < cx < 1 and all(map(math.isfinite, (top, chin, cx)))):
            raise ValueError("head box out of range")
        return {"top": top, "chin": chin, "center_x": cx}
    except (OSError, ValueError, KeyError, TypeError):
        return dict(defaults)


def mask_landmarks(mask: np.ndarray, labels: LabelSet = CELEBAMASK_HQ) -> dict | None:
    """Eye and mouth centroids of a label map ``(H, W)`` ids of ``labels``, pixels (x right, y down, pixel
    centres).

    Returns:
        ``{"eye": [x, y], "mouth": [x, y]}``, or None when a class group is missing (fewer than
        :data:`MIN_LANDMARK_PIXELS` at 512^2) or implausible (the mouth must lie below the eyes, more
        below than beside them: true of upright human faces and of cat faces, whose mouth class, the nose
        pad and mouth line, sits under the eyes' midpoint) or the set has no landmark classes
        (:data:`LANDMARK_CLASSES`).
    """
    classes = LANDMARK_CLASSES.get(labels.name)
    if classes is None:
        return None
    eyes = np.argwhere(np.isin(mask, classes["eye"]))
    mouth = np.argwhere(np.isin(mask, classes["mouth"]))
    scale = (mask.shape[0] * mask.shape[1]) / (512.0 * 512.0)
    if len(eyes) < MIN_LANDMARK_PIXELS * scale or len(mouth) < MIN_LANDMARK_PIXELS * scale:
        return None
    e = eyes.mean(axis=0)[::-1]
    m = mouth.mean(axis=0)[::-1]
    dx, dy = m - e
    if dy <= 0 or abs(dx) > dy:
        return None
    return {"eye": [float(e[0]), float(e[1])], "mouth": [float(m[0]), float(m[1])]}


def mask_head_box(mask: np.ndarray, labels: LabelSet = CELEBAMASK_HQ) -> dict | None:
    """Top of the head classes, bottom of the face classes (chin) and the face's centre column, pixels.

    The classes are the set's :data:`LANDMARK_CLASSES` ``head`` and ``face``; for seg2cat the top is the
    ear tips and the "chin" the bottom of the muzzle (eyes, mouth, whisker pads).

    Returns:
        ``{"top": y, "chin": y, "center_x": x}`` (continuous pixel coordinates, edges), or None when the
        map has too little face or ``labels`` has no landmark classes (:data:`LANDMARK_CLASSES`).
    """
    classes = LANDMARK_CLASSES.get(labels.name)
    if classes is None:
        return None
    scale = (mask.shape[0] * mask.shape[1]) / (512.0 * 512.0)
    face = np.argwhere(np.isin(mask, classes["face"]))
    if len(face) < 2000 * scale:
        return None
    head_rows = np.nonzero(np.isin(mask, classes["head"]).any(axis=1))[0]
    top, chin = float(head_rows.min()) - 0.5, float(face[:, 0].max()) + 0.5
    if chin - top < 8:
        return None
    return {"top": top, "chin": chin, "center_x": float(face[:, 1].mean())}
