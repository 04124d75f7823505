"""Face landmarks of a label map for the second framing pass (backend/align.py): where the eyes, the
mouth and the head box (head top, chin, face centre) are in a mask, and where they belong in the
canonical framing (measured on SynHead masks; ``canonical_framing.json`` may override the landmarks).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from backend.labels import CELEBAMASK_HQ, LABEL_IDS, LabelSet

#: Where the SynHead generator writes the framing statistics of its sketches (also backend/align.py's).
CANONICAL_FRAMING_PATH = Path(__file__).resolve().parent / "canonical_framing.json"
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
#: The head's classes, skin .. ear_r (hair and hat included; neck, cloth and background not).
HEAD_IDS = tuple(range(LABEL_IDS["skin"], LABEL_IDS["ear_r"] + 1))
#: The face proper: its bottom row is the chin.
FACE_IDS = tuple(LABEL_IDS[n] for n in ("skin", "nose", "l_eye", "r_eye", "l_brow", "r_brow", "mouth", "u_lip",
                                        "l_lip"))
EYE_IDS = (LABEL_IDS["l_eye"], LABEL_IDS["r_eye"])
MOUTH_IDS = (LABEL_IDS["mouth"], LABEL_IDS["u_lip"], LABEL_IDS["l_lip"])
#: The classes of the landmarks, per label set name. Only the human set has an entry: the canonical
#: places above are measured on SynHead (human) masks, and a cat's eyes and mouth sit elsewhere in its
#: framing, so seg2cat masks get no landmark or head-box reframing and keep the content-box framing
#: (whose SynCat statistics match SynHead's, docs/syncat.md) until cat landmark statistics are measured.
LANDMARK_CLASSES: dict[str, dict[str, tuple[int, ...]]] = {
    CELEBAMASK_HQ.name: {"eye": EYE_IDS, "mouth": MOUTH_IDS, "head": HEAD_IDS, "face": FACE_IDS},
}
#: Fewest pixels (at 512^2) a landmark class needs to count as found.
MIN_LANDMARK_PIXELS = 12


def canonical_landmarks(path: str | Path | None = None) -> dict:
    """``{"eye_center": [x, y], "eye_mouth_distance": d, "source"}`` in normalised input-view coords.

    ``eye_center`` / ``eye_mouth_distance`` keys of ``canonical_framing.json`` override the defaults.
    """
    path = Path(path) if path is not None else CANONICAL_FRAMING_PATH
    try:
        data = json.loads(path.read_text())
        ex, ey = (float(v) for v in data["eye_center"])
        d = float(data["eye_mouth_distance"])
        if not (0.02 < d < 0.6 and 0 < ex < 1 and 0 < ey < 1):
            raise ValueError("landmarks out of range")
        return {"eye_center": [ex, ey], "eye_mouth_distance": d, "source": str(path.name)}
    except (OSError, ValueError, KeyError, TypeError):
        return dict(DEFAULT_CANONICAL_LANDMARKS)


def mask_landmarks(mask: np.ndarray, labels: LabelSet = CELEBAMASK_HQ) -> dict | None:
    """Eye and mouth centroids of a label map ``(H, W)`` ids of ``labels``, pixels (x right, y down, pixel
    centres).

    Returns:
        ``{"eye": [x, y], "mouth": [x, y]}``, or None when a class group is missing or implausible (the
        mouth must lie below the eyes, more below than beside them) or the set has no landmark classes
        (:data:`LANDMARK_CLASSES`: seg2cat).
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
