"""Smoothing of the back of the depth-interval prior: a fix for the face embossed on the back of the head.

With the depth-interval prior (backend/models/triplane.py) the X-Z plane's channels 0 and 1 hold, per
front-view pixel, the centre c and half-thickness h of the occupied interval along Y, so the front surface
sits at ``y_front = c - h`` and the back surface at ``y_back = c + h`` (normalised box units, the face
looking along -Y). Both come from the same pixel-aligned features, which carry the face's detail (eyes, nose,
mouth), so the back surface inherits a faint copy of the face's relief: a "ghost face" on the back of long
hair (docs/models.md, "Appearance": the high-pass of y_back correlates with y_front's, -0.39 on
``examples/head_long_hair.png``). The back of a head (hair, skull, neck) has no detail at that scale, so this
inference step low-passes ``y_back`` with an edge-preserving (bilateral) average, fully in the silhouette's
interior and fading to none at its outline (a filter that reached the outline would mix the deep interior
into the thin edge and raise a rim), and leaves ``y_front`` as it is.

This project's addition, not part of pix2pix3D or EG3D; the model card's ``inference.back_depth_smoothing_px``
(spatial sigma in plane texels; absent or 0: off) switches it on (backend/models/loading.py).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

#: Smallest half-thickness the smoothing leaves inside the silhouette (normalised units, 0.002 = 0.4 mm in the
#: 0.4 m box): a smoothed back never crosses the front.
MIN_HALF_THICKNESS = 0.002


def gaussian_blur(image: torch.Tensor, sigma_px: float) -> torch.Tensor:
    """Separable Gaussian blur of ``image (B, 1, R, R)`` float32 with zero padding (kernel radius 3 sigma)."""
    radius = max(1, int(math.ceil(3.0 * sigma_px)))
    x = torch.arange(-radius, radius + 1, dtype=image.dtype, device=image.device)
    k = torch.exp(-0.5 * (x / sigma_px) ** 2)
    k = k / k.sum()
    out = F.conv2d(image, k.view(1, 1, 1, -1), padding=(0, radius))
    return F.conv2d(out, k.view(1, 1, -1, 1), padding=(radius, 0))


def interior_weight(inside: torch.Tensor, sigma_px: float) -> torch.Tensor:
    """``(B, 1, R, R)`` float32 in [0, 1]: 0 outside the silhouette and within about 3 sigma of its outline,
    rising to 1 deeper inside (the mask eroded by 3 sigma, then blurred by sigma and kept inside the
    eroded-by-one mask)."""
    radius = max(1, int(math.ceil(3.0 * sigma_px)))
    eroded = -F.max_pool2d(-inside, 2 * radius + 1, stride=1, padding=radius)
    return gaussian_blur(eroded, sigma_px) * inside


def _bilateral_pass(values: torch.Tensor, inside: torch.Tensor, sigma_px: float, range_sigma: float,
                    vertical: bool) -> torch.Tensor:
    """One 1D pass of :func:`bilateral_average` along rows (``vertical`` False) or columns."""
    b, _, r, _ = values.shape
    radius = max(1, int(math.ceil(3.0 * sigma_px)))
    k = 2 * radius + 1
    kernel, pad = ((k, 1), (0, 0, radius, radius)) if vertical else ((1, k), (radius, radius, 0, 0))
    offsets = torch.arange(-radius, radius + 1, dtype=values.dtype, device=values.device)
    spatial = torch.exp(-0.5 * (offsets / sigma_px) ** 2).view(1, -1, 1)
    window = F.unfold(F.pad(values, pad), kernel)  # (B, 2 radius + 1, R*R)
    valid = F.unfold(F.pad(inside, pad), kernel)
    weight = spatial * valid * torch.exp(-0.5 * ((window - values.view(b, 1, r * r)) / range_sigma) ** 2)
    return ((weight * window).sum(1) / weight.sum(1).clamp_min(1e-6)).view(b, 1, r, r)


def bilateral_average(back: torch.Tensor, inside: torch.Tensor, sigma_px: float, range_sigma: float) -> torch.Tensor:
    """Edge-preserving average of ``back (B, 1, R, R)`` over silhouette pixels (``inside``, 0/1 float): weights
    ``exp(-d^2 / 2 sigma_px^2) * exp(-(v - v0)^2 / 2 range_sigma^2)`` (Tomasi and Manduchi, ICCV 1998), applied
    as a row pass then a column pass (the separable approximation of Pham and van Vliet, ICME 2005: 2 (6 sigma
    + 1) taps a pixel instead of (6 sigma + 1)^2), so steps larger than ``range_sigma`` (hair ending over the
    neck) stay steps while a relief of a few millimetres is averaged away."""
    rows = _bilateral_pass(back, inside, sigma_px, range_sigma, vertical=False)
    return _bilateral_pass(rows, inside, sigma_px, range_sigma, vertical=True)


def smooth_back_depth(planes: torch.Tensor, sigma_px: float, range_sigma: float = 0.025) -> torch.Tensor:
    """Planes ``(B, 3, C, R, R)`` float32 with the back of the depth interval low-passed in the interior.

    Args:
        planes: tri-plane features; plane 1 (X-Z), channels 0 and 1 are the interval's centre c and
            half-thickness h (normalised box units; h <= 0 off the silhouette).
        sigma_px: spatial sigma in plane texels (0.4 m / R each; 3.1 mm at R = 128); <= 0 returns
            ``planes`` unchanged.
        range_sigma: depth sigma of the edge-preserving weights, normalised units (0.025 = 5 mm).

    Returns:
        A new tensor: ``y_back = c + h`` becomes ``y_back + a (G(y_back) - y_back)``, with G the
        :func:`bilateral_average` over the silhouette and ``a`` the :func:`interior_weight`;
        ``y_front = c - h`` is kept, so ``c' = y_front + h'`` and ``h' = max((y_back' - y_front) / 2,
        MIN_HALF_THICKNESS)`` inside; every value outside the silhouette and every other channel unchanged.

    Raises:
        ValueError: ``planes`` not shaped ``(B, 3, C >= 2, R, R)``.
    """
    if planes.dim() != 5 or planes.shape[1] != 3 or planes.shape[2] < 2:
        raise ValueError(f"planes must be (B, 3, C >= 2, R, R), got {tuple(planes.shape)}")
    if sigma_px <= 0:
        return planes
    c, h = planes[:, 1, 0:1], planes[:, 1, 1:2]
    inside = (h > 0).to(planes.dtype)
    front, back = c - h, c + h
    average = bilateral_average(back, inside, sigma_px, range_sigma)
    back = back + interior_weight(inside, sigma_px) * (average - back)
    half = ((back - front) / 2).clamp_min(MIN_HALF_THICKNESS)
    out = planes.clone()
    out[:, 1, 0:1] = torch.where(inside > 0, front + half, c)
    out[:, 1, 1:2] = torch.where(inside > 0, half, h)
    return out
