"""The working copy shared by the paper clean-up steps (backend/sketch/paper.py): steps measure on a copy
whose long side is at most ``WORK_PX`` (the measurements are size-free), and grey <-> uint8."""
from __future__ import annotations

import cv2
import numpy as np

#: Steps work on a copy whose long side is at most this many pixels (the measurements are size-free).
WORK_PX = 512


def to_u8(g: np.ndarray) -> np.ndarray:
    """Grey in [0, 1] -> uint8 (clipped, rounded)."""
    return np.round(np.clip(g, 0, 1) * 255.0).astype(np.uint8)


def work(g: np.ndarray) -> np.ndarray:
    """``g`` resized (area) so its long side is at most ``WORK_PX``."""
    h, w = g.shape
    s = min(1.0, WORK_PX / max(h, w))
    if s >= 1.0:
        return g
    return cv2.resize(g.astype(np.float32), (max(1, round(w * s)), max(1, round(h * s))),
                      interpolation=cv2.INTER_AREA).astype(np.float64)


def odd(n: float) -> int:
    """``round(n)``, at least 3, made odd (kernel sizes)."""
    n = max(3, round(n))
    return n if n % 2 else n + 1
