"""Random colours of one head: skin (the whole human range), hair, brows, iris, lips, clothing.

All colours are sRGB floats in [0, 1]. Skin tones interpolate a dark-to-light ramp of measured-looking
anchors; the anny race weights shift the draw so darker skins go with higher ``african`` weight, but
every weight can reach every tone.
"""
from __future__ import annotations

import numpy as np

_SKIN_RAMP = np.array([
    [0.24, 0.15, 0.11], [0.36, 0.23, 0.16], [0.52, 0.35, 0.25], [0.66, 0.47, 0.35],
    [0.78, 0.60, 0.48], [0.87, 0.71, 0.60], [0.95, 0.82, 0.73]])
_HAIR = {
    "black": [0.06, 0.05, 0.05], "dark_brown": [0.17, 0.11, 0.07], "brown": [0.33, 0.21, 0.12],
    "light_brown": [0.52, 0.37, 0.23], "blond": [0.80, 0.67, 0.43], "platinum": [0.90, 0.85, 0.72],
    "red": [0.55, 0.22, 0.10], "auburn": [0.38, 0.14, 0.08], "grey": [0.55, 0.55, 0.55],
    "white": [0.86, 0.86, 0.84],
}
_HAIR_P = {"black": 0.22, "dark_brown": 0.22, "brown": 0.17, "light_brown": 0.1, "blond": 0.1,
           "platinum": 0.03, "red": 0.04, "auburn": 0.04, "grey": 0.05, "white": 0.03}
_IRIS = {"dark_brown": [0.18, 0.10, 0.05], "brown": [0.35, 0.20, 0.08], "hazel": [0.45, 0.36, 0.15],
         "green": [0.30, 0.45, 0.25], "blue": [0.30, 0.45, 0.70], "grey": [0.50, 0.55, 0.58]}
_IRIS_P = {"dark_brown": 0.35, "brown": 0.25, "hazel": 0.12, "green": 0.08, "blue": 0.14, "grey": 0.06}


def sample_appearance(rng: np.random.Generator, phenotypes: dict) -> dict:
    """Colours for one head: a dict of RGB triples (sRGB floats 0..1) and names, JSON-ready."""
    shift = 0.45 * phenotypes.get("african", 1 / 3) - 0.15 * phenotypes.get("caucasian", 1 / 3)
    t = float(np.clip(rng.beta(2.0, 2.0) - shift + 0.1, 0.0, 1.0))
    pos = t * (len(_SKIN_RAMP) - 1)
    i = min(int(pos), len(_SKIN_RAMP) - 2)
    skin = _SKIN_RAMP[i] * (1 - (pos - i)) + _SKIN_RAMP[i + 1] * (pos - i)
    skin = np.clip(skin * rng.uniform(0.95, 1.05, 3), 0, 1)
    age = phenotypes.get("age", 0.6)
    names = list(_HAIR)
    p = np.array([_HAIR_P[n] for n in names])
    if age > 0.85:
        p[names.index("grey")] *= 6
        p[names.index("white")] *= 4
    hair_name = str(rng.choice(names, p=p / p.sum()))
    hair = np.clip(np.array(_HAIR[hair_name]) * rng.uniform(0.85, 1.15), 0, 1)
    brow = np.clip(hair * 0.8 + skin * 0.1, 0, 1) if hair_name not in ("grey", "white") else np.array([0.35, 0.33, 0.32])
    iris_names = list(_IRIS)
    ip = np.array([_IRIS_P[n] for n in iris_names])
    iris_name = str(rng.choice(iris_names, p=ip / ip.sum()))
    iris = np.clip(np.array(_IRIS[iris_name]) * rng.uniform(0.85, 1.15), 0, 1)
    lip_tint = np.array([0.80, 0.42, 0.42]) if rng.random() < 0.8 else np.array([0.75, 0.15, 0.2])
    lips = np.clip(skin * rng.uniform(0.55, 0.75) + lip_tint * rng.uniform(0.15, 0.35), 0, 1)
    cloth = rng.uniform(0.05, 0.9, 3) if rng.random() < 0.6 else np.full(3, rng.uniform(0.05, 0.95))
    glasses = np.full(3, rng.uniform(0.02, 0.5)) if rng.random() < 0.8 else rng.uniform(0.1, 0.8, 3)
    r3 = lambda a: [round(float(x), 4) for x in a]  # noqa: E731
    return {"skin_rgb": r3(skin), "hair_rgb": r3(hair), "hair_color": hair_name, "brow_rgb": r3(brow),
            "iris_rgb": r3(iris), "iris_color": iris_name, "lip_rgb": r3(lips), "cloth_rgb": r3(cloth),
            "glasses_rgb": r3(glasses), "sclera_rgb": r3([0.93, 0.92, 0.90]), "mouth_rgb": r3([0.35, 0.1, 0.1])}
