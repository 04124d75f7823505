"""Colours an artist picks: hair, skin, eye and lip colours applied per class on a head's vertex colours.

A pick replaces the mean colour of its class group and keeps each vertex's brightness relative to that
mean (the shading, strands and blotches the generator painted), so a head can match a character sheet
without repainting: ``new = pick * luminance(vertex) / mean luminance(group)``, in linear RGB, clipped
to [0, 1]. Picks are sRGB hex strings (``#rrggbb``), the form colour pickers and character sheets use.
"""
from __future__ import annotations

import re

import numpy as np

from backend.colorspace import srgb_to_linear
from backend.labels import LABEL_IDS

#: Pickable groups and the classes each recolours.
PICK_GROUPS: dict[str, tuple[str, ...]] = {
    "hair": ("hair",),
    "skin": ("skin", "nose", "l_ear", "r_ear", "neck"),
    "eyes": ("l_eye", "r_eye"),
    "lips": ("u_lip", "l_lip"),
    "brows": ("l_brow", "r_brow"),
    "cloth": ("cloth",),
}
_HEX = re.compile(r"#[0-9a-fA-F]{6}")
#: Rec. 709 luminance weights of linear RGB.
_LUMA = np.array([0.2126, 0.7152, 0.0722])


def parse_picks(picks: object) -> dict[str, np.ndarray]:
    """Check ``{"hair" | "skin" | "eyes" | "lips": "#rrggbb"}`` and return linear RGB ``(3,)`` float64 per
    group.

    Raises:
        ValueError: not an object, an unknown group, or a value that is not ``#rrggbb``; the message says
            what is allowed.
    """
    if not isinstance(picks, dict):
        raise ValueError(f"colours must be an object such as {{\"hair\": \"#5a3825\"}}, not {picks!r}")
    out = {}
    for group, value in picks.items():
        if group not in PICK_GROUPS:
            raise ValueError(f"unknown colour group {group!r}; pick from {sorted(PICK_GROUPS)}")
        if not isinstance(value, str) or not _HEX.fullmatch(value):
            raise ValueError(f"colour of {group} must be '#rrggbb' (sRGB hex), not {value!r}")
        srgb = np.array([int(value[i:i + 2], 16) for i in (1, 3, 5)], np.float64) / 255.0
        out[group] = srgb_to_linear(srgb)
    return out


def apply_picks(colours: np.ndarray, labels: np.ndarray, picks: dict[str, np.ndarray]) -> np.ndarray:
    """Recolour ``colours (V, 3)`` linear RGB in [0, 1] by class group: each picked group's vertices
    (``labels (V,)`` class ids) get ``pick * luminance / mean luminance of the group``. Groups with no
    vertex are skipped. Returns a new float32 array."""
    out = np.asarray(colours, np.float64).copy()
    labels = np.asarray(labels)
    for group, pick in picks.items():
        sel = np.isin(labels, [LABEL_IDS[n] for n in PICK_GROUPS[group]])
        if not sel.any():
            continue
        lum = out[sel] @ _LUMA
        relative = lum / max(float(lum.mean()), 1e-6)
        out[sel] = np.clip(pick[None, :] * relative[:, None], 0.0, 1.0)
    return out.astype(np.float32)
