"""GRAF-style image patches of a rendered view: the real samples of the patch discriminator.

GRAF (Schwarz et al., NeurIPS 2020, section 3.1) trains a radiance-field GAN on K x K patches whose
sample points are spread over a random part of the image: a scale s in [min_scale, 1] (the share of the
image side the patch spans) and a random centre that keeps the patch inside the image. A generator then
renders only K^2 rays per example, and the discriminator sees both the whole head (s = 1, coarse) and
details (small s, at the view's native resolution). This module cuts such patches out of a SynHead view
(linear RGB composited on white, alpha, depth in metres, label map as class fractions) and gives the rays
through the same points, so the generator renders exactly what the patch shows.

Resampling: the view is first area-averaged to the patch's own pixel spacing (K / s pixels across the
image, when that is below the view's resolution), then sampled bilinearly at the K x K points, so a
coarse patch is an anti-aliased picture and not a scatter of single pixels.
"""
from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from backend.models.renderer import rays_through


def patch_grid(size: int, scale: float, centre: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Image coordinates ``u, v (size, size)`` float64 of a patch's sample points (u right, v up, the image
    spans [-1, 1]; row 0 of the patch is its top). ``scale`` in (0, 1]: the patch spans ``scale`` of the
    image side; ``centre = (u0, v0)``."""
    offs = ((np.arange(size) + 0.5) / size * 2.0 - 1.0) * scale
    u, v = np.meshgrid(centre[0] + offs, centre[1] - offs, indexing="xy")
    return u, v


def _sample(img: np.ndarray, u: np.ndarray, v: np.ndarray, scale: float) -> np.ndarray:
    """Area-prefilter ``img (H, H, C)`` float32 to the patch's pixel spacing, then sample it bilinearly at
    ``u, v``. Returns ``(size, size, C)`` float32."""
    res = img.shape[0]
    target = int(round(u.shape[0] / scale))
    if target < res:
        # cv2.resize takes at most 4 channels with INTER_AREA: resize in groups
        img = np.concatenate([cv2.resize(img[..., i:i + 4], (target, target), interpolation=cv2.INTER_AREA).reshape(
            target, target, -1) for i in range(0, img.shape[-1], 4)], axis=-1)
        res = target
    x = ((u + 1.0) / 2.0 * res - 0.5).astype(np.float32)
    y = ((1.0 - v) / 2.0 * res - 0.5).astype(np.float32)
    chans = [cv2.remap(img[..., i:i + 4], x, y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).reshape(
        x.shape[0], x.shape[1], -1) for i in range(0, img.shape[-1], 4)]
    return np.concatenate(chans, axis=-1)


def view_patch(rgb_linear: np.ndarray, alpha: np.ndarray, depth: np.ndarray, label: np.ndarray,
               camera: dict[str, Any], rng: np.random.Generator, size: int, min_scale: float,
               num_classes: int) -> dict[str, np.ndarray]:
    """One random K x K patch of a view and the rays through its sample points.

    Args:
        rgb_linear: ``(H, H, 3)`` float32 linear colour in [0, 1] (not yet composited).
        alpha: ``(H, H)`` float32 coverage; ``depth``: ``(H, H)`` float32 metres along the viewing axis
            (non-finite or anything where alpha <= 0.5 counts as empty); ``label``: ``(H, H)`` uint8 ids.
        camera: the view's camera dict (docs/contracts.md section 3).
        size: K; ``min_scale``: the smallest share of the image side a patch spans (GRAF's s_min; K / H
            reaches the view's native resolution).

    Returns:
        ``patch_rgb (3, K, K)`` linear, composited on white; ``patch_alpha (K, K)``; ``patch_depth (K, K)``
        metres (0 where empty); ``patch_has_depth ()`` 1 (a photo's patch has 0: :func:`photo_patch`);
        ``patch_label (num_classes, K, K)`` class fractions; ``patch_spacing``
        ``()`` metres between neighbouring sample points (orthographic views; the image's width over K for
        perspective ones); ``patch_ray_o``, ``patch_ray_d (K*K, 3)`` normalised box coordinates and
        ``patch_ray_fwd (K*K, 3)``; all float32, pixel order row-major.

    Raises:
        ValueError: ``min_scale`` outside (0, 1] or a malformed camera.
    """
    if not 0.0 < min_scale <= 1.0:
        raise ValueError(f"min_scale must be in (0, 1], got {min_scale}")
    scale = float(rng.uniform(min_scale, 1.0))
    centre = (float(rng.uniform(scale - 1.0, 1.0 - scale)), float(rng.uniform(scale - 1.0, 1.0 - scale)))
    u, v = patch_grid(size, scale, centre)
    full = alpha > 0.5
    depth = np.where(np.isfinite(depth) & full, depth, 0.0).astype(np.float32)
    onehot = np.eye(num_classes, dtype=np.float32)[label]
    stack = np.concatenate([rgb_linear * alpha[..., None], alpha[..., None], (depth * full)[..., None],
                            full[..., None].astype(np.float32), onehot], axis=-1)
    p = _sample(stack.astype(np.float32), u, v, scale)
    a = np.clip(p[..., 3], 0.0, 1.0)
    covered = p[..., 5]
    patch_depth = np.where(covered > 0.5, p[..., 4] / np.maximum(covered, 1e-6), 0.0)
    rgb = p[..., :3] + (1.0 - a[..., None])  # premultiplied colour over white
    origins, dirs, fwd = rays_through(camera, u.reshape(-1), v.reshape(-1))
    width_m = float(camera.get("ortho_size_m", 0.4))
    return {"patch_rgb": np.transpose(np.clip(rgb, 0.0, 1.0), (2, 0, 1)).astype(np.float32),
            "patch_alpha": a.astype(np.float32), "patch_depth": patch_depth.astype(np.float32),
            "patch_has_depth": np.array(1.0, np.float32),
            "patch_label": np.transpose(p[..., 6:], (2, 0, 1)).astype(np.float32),
            "patch_spacing": np.array(width_m * scale / size, np.float32),
            "patch_ray_o": origins.numpy(), "patch_ray_d": dirs.numpy(),
            "patch_ray_fwd": np.broadcast_to(fwd.numpy(), (size * size, 3)).astype(np.float32)}


def photo_patch(rgb_srgb: np.ndarray, mask_ids: np.ndarray, rng: np.random.Generator, size: int, min_scale: float,
                num_classes: int) -> dict[str, np.ndarray]:
    """A patch of a face photo with its label map (CelebAMask-HQ; pix2pix3D's 2D-only data), seen as the
    front orthographic view of the box (the photo is assumed aligned like an input mask: it spans the
    box's X-Z face).

    ``rgb_srgb (H, W, 3)`` float in [0, 1] (resized to the mask's size), ``mask_ids (S, S)`` uint8. The
    photo's background (label 0) is made transparent, so the real patch is composited on white like a
    render; a photo has no depth, so ``patch_depth`` is 0 and ``patch_has_depth`` 0 (the loss then hides
    the normals of both the real and the rendered patch). Returns :func:`view_patch`'s arrays.
    """
    from backend.models.renderer import orthographic_camera
    from backend.colorspace import srgb_to_linear

    res = mask_ids.shape[0]
    if rgb_srgb.shape[:2] != (res, res):
        rgb_srgb = cv2.resize(rgb_srgb.astype(np.float32), (res, res), interpolation=cv2.INTER_AREA)
    alpha = (mask_ids > 0).astype(np.float32)
    out = view_patch(srgb_to_linear(rgb_srgb.astype(np.float32)), alpha, np.zeros((res, res), np.float32), mask_ids,
                     orthographic_camera("front", res), rng, size, min_scale, num_classes)
    out["patch_has_depth"] = np.array(0.0, np.float32)
    return out
