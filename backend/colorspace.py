"""Colour-space conversion, the one copy: the sRGB transfer function (IEC 61966-2-1) both ways.

The radiance field, vertex colours and GLB colours are linear; PLY bytes, PNG previews and the training
photos are sRGB-encoded (docs/design.md section 5).
"""
from __future__ import annotations

import numpy as np


def linear_to_srgb(x: np.ndarray, dtype: type = np.float64) -> np.ndarray:
    """Linear values in [0, 1] (clipped) -> sRGB-encoded [0, 1], same shape, computed and returned in
    ``dtype`` (float64 for exported colours; training's float32 images pass ``np.float32``)."""
    x = np.clip(np.asarray(x, dtype=dtype), 0.0, 1.0)
    return np.where(x <= 0.0031308, x * 12.92, 1.055 * x ** (1 / 2.4) - 0.055).astype(dtype)


def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    """sRGB-encoded values in [0, 1] -> linear [0, 1], same shape, float32."""
    x = np.asarray(x, np.float32)
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4).astype(np.float32)
