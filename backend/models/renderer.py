"""Volume rendering of a density field with colour and semantics: RGB, semantic, depth and alpha images.

Emission-absorption quadrature as in NeRF (Mildenhall et al., ECCV 2020, section 4 eq. 3 and section 5.2
hierarchical sampling) and EG3D / pix2pix3D's renderer: stratified samples between the ray's entry and
exit of the box, then importance samples drawn from the piecewise-constant pdf of the coarse weights.

Frames: cameras are given in metres in the canonical head frame (docs/contracts.md section 3 camera
dict: ``cam2world`` 4x4, the camera looks along its -Z with +Y up, OpenGL convention); rays are traced in
normalised box coordinates (backend/coords.py), where the field lives; depth comes back in metres along
the camera's viewing axis, like SynHead's depth maps.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from backend.coords import BOX_CENTER_M, BOX_SIZE_M

#: A field: ``xyz (B, N, 3)`` normalised box coordinates -> {"sigma": (B,N,1), "rgb": (B,N,3), "semantic": (B,N,K)}.
Field = Callable[[torch.Tensor], dict[str, torch.Tensor]]


def camera_rays(camera: dict[str, Any], resolution: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rays of every pixel of a camera, in normalised box coordinates.

    Args:
        camera: ``{"type": "orthographic"|"perspective", "cam2world": 4x4 (metres), "ortho_size_m" |
            "fov_deg", "resolution": R}``; pixel (col i, row j) centre is at ``(i + 0.5, j + 0.5)``, row 0 top.
        resolution: overrides ``camera["resolution"]``.

    Returns:
        ``origins (R*R, 3)``, ``directions (R*R, 3)`` unit vectors, ``forward (3,)`` the viewing axis;
        float32, row-major pixel order (row j, then column i).

    Raises:
        ValueError: unknown camera type or missing fields.
    """
    res = int(resolution or camera.get("resolution") or 0)
    if res <= 0:
        raise ValueError("camera needs a positive 'resolution' (or pass resolution=)")
    ndc = (np.arange(res) + 0.5) / res * 2.0 - 1.0
    u, v = np.meshgrid(ndc, -ndc, indexing="xy")  # u right, v up; row 0 top
    return rays_through(camera, u.reshape(-1), v.reshape(-1))


def rays_through(camera: dict[str, Any], u: np.ndarray, v: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rays through arbitrary image points of a camera, in normalised box coordinates.

    ``u, v (N,)`` float: image coordinates in [-1, 1], u to the right, v up (the image's left edge is
    u = -1, its top edge v = +1); any sub-pixel position, as patch sampling needs (GRAF, Schwarz et al.,
    NeurIPS 2020, section 3.1). Returns ``origins (N, 3)``, ``directions (N, 3)`` unit vectors,
    ``forward (3,)``, float32.

    Raises:
        ValueError: unknown camera type or missing fields.
    """
    c2w = np.asarray(camera.get("cam2world"), dtype=np.float64)
    if c2w.shape != (4, 4):
        raise ValueError("camera 'cam2world' must be a 4x4 matrix (metres, camera looks along its -Z)")
    u, v = np.asarray(u, dtype=np.float64), np.asarray(v, dtype=np.float64)
    half = BOX_SIZE_M / 2.0
    rot, centre = c2w[:3, :3], c2w[:3, 3]
    forward = -rot[:, 2]
    kind = camera.get("type")
    if kind == "orthographic":
        if "ortho_size_m" not in camera:
            raise ValueError("orthographic camera needs 'ortho_size_m' (side of the square view, metres)")
        s = float(camera["ortho_size_m"]) / 2.0
        pts_cam = np.stack([u * s, v * s, np.zeros_like(u)], -1)
        origins = pts_cam @ rot.T + centre
        dirs = np.broadcast_to(forward, origins.shape)
    elif kind == "perspective":
        if "fov_deg" not in camera:
            raise ValueError("perspective camera needs 'fov_deg' (vertical field of view, degrees)")
        t = math.tan(math.radians(float(camera["fov_deg"])) / 2.0)
        d_cam = np.stack([u * t, v * t, -np.ones_like(u)], -1)
        dirs = d_cam @ rot.T
        dirs = dirs / np.linalg.norm(dirs, axis=-1, keepdims=True)
        origins = np.broadcast_to(centre, dirs.shape)
    else:
        raise ValueError(f"camera type must be 'orthographic' or 'perspective', not {kind!r}")
    origins = (origins - np.asarray(BOX_CENTER_M)) / half
    return (torch.tensor(origins, dtype=torch.float32),
            torch.tensor(np.ascontiguousarray(dirs), dtype=torch.float32),
            torch.tensor(forward, dtype=torch.float32))


def ray_box_bounds(origins: torch.Tensor, dirs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Entry and exit distances of rays ``(..., 3)`` through the box [-1, 1]^3 (slab method).

    Returns ``near (...)``, ``far (...)`` (clamped to start at 0) and ``hit (...)`` bool.
    """
    safe = torch.where(dirs.abs() < 1e-9, torch.full_like(dirs, 1e-9), dirs)
    t0, t1 = (-1.0 - origins) / safe, (1.0 - origins) / safe
    near = torch.minimum(t0, t1).amax(dim=-1).clamp(min=0.0)
    far = torch.maximum(t0, t1).amin(dim=-1)
    hit = far > near + 1e-6
    far = torch.where(hit, far, near + 1e-3)
    return near, far, hit


def sample_pdf(bins: torch.Tensor, weights: torch.Tensor, n: int, generator: torch.Generator | None) -> torch.Tensor:
    """Inverse-transform samples ``(..., n)`` from the piecewise-constant pdf ``weights (..., M)`` over
    ``bins (..., M+1)`` edges (NeRF section 5.2). Deterministic (evenly spaced u) when ``generator`` is None.
    """
    w = weights + 1e-5
    pdf = w / w.sum(-1, keepdim=True)
    cdf = torch.cat([torch.zeros_like(pdf[..., :1]), pdf.cumsum(-1)], dim=-1)
    shape = (*cdf.shape[:-1], n)
    if generator is None:
        u = torch.linspace(0.5 / n, 1.0 - 0.5 / n, n, device=cdf.device).expand(shape).contiguous()
    else:
        u = torch.rand(shape, generator=generator).to(cdf.device)
    idx = torch.searchsorted(cdf.contiguous(), u, right=True).clamp(1, cdf.shape[-1] - 1)
    c0, c1 = cdf.gather(-1, idx - 1), cdf.gather(-1, idx)
    b0, b1 = bins.gather(-1, idx - 1), bins.gather(-1, idx)
    frac = (u - c0) / (c1 - c0).clamp(min=1e-8)
    return b0 + frac * (b1 - b0)


class VolumeRenderer:
    """Stratified + importance-sampled volume renderer for a :data:`Field` (NeRF / EG3D).

    Args:
        num_samples: stratified samples per ray between box entry and exit.
        num_importance: extra samples per ray drawn from the coarse weights (0 disables).
        background_rgb: colour composited where the ray is not fully absorbed, in [0, 1].
        background_class: semantic class given to the unabsorbed part (0 = background).
    """

    def __init__(self, num_samples: int = 24, num_importance: int = 24, background_rgb: float = 1.0,
                 background_class: int = 0):
        if num_samples < 2 or num_importance < 0:
            raise ValueError("num_samples must be >= 2 and num_importance >= 0")
        self.num_samples = num_samples
        self.num_importance = num_importance
        self.background_rgb = background_rgb
        self.background_class = background_class

    @staticmethod
    def composite(sigma: torch.Tensor, t: torch.Tensor, far: torch.Tensor) -> torch.Tensor:
        """Weights ``(B, M, S)`` of sorted samples: ``alpha_i = 1 - exp(-sigma_i * delta_i)`` times transmittance.

        ``sigma (B, M, S)`` per unit box length, ``t (B, M, S)`` sorted distances, ``far (B, M)``.
        """
        delta = torch.cat([t[..., 1:] - t[..., :-1], (far[..., None] - t[..., -1:]).clamp(min=0.0)], dim=-1)
        alpha = 1.0 - torch.exp(-sigma * delta)
        trans = torch.cumprod(torch.cat([torch.ones_like(alpha[..., :1]), 1.0 - alpha[..., :-1] + 1e-10], -1), -1)
        return alpha * trans

    def render_rays(self, field: Field, origins: torch.Tensor, dirs: torch.Tensor,
                    forward: torch.Tensor | None = None, generator: torch.Generator | None = None,
                    detach_appearance: bool = False) -> dict[str, torch.Tensor]:
        """Render rays ``origins, dirs (B, M, 3)`` (normalised box coordinates, unit directions).

        ``forward (B, 3)`` or ``(B, M, 3)`` is the camera's viewing axis for depth (default: the ray direction).
        ``generator``: stratified jitter and importance draws; None = deterministic mid-bin samples.
        ``detach_appearance`` (training): RGB and semantics are composited with the weights detached, so
        their losses train colour and labels on the surface that is there and cannot move the density
        (measured in docs/models.md: semantic render losses otherwise traded geometry for labels).

        Returns ``{"rgb": (B, M, 3), "semantic": (B, M, K) probabilities, "depth": (B, M) metres along
        the viewing axis (0 where nothing is hit), "alpha": (B, M)}``.
        """
        b, m, _ = origins.shape
        near, far, hit = ray_box_bounds(origins, dirs)
        s = self.num_samples
        steps = torch.arange(s, device=origins.device, dtype=origins.dtype)
        if generator is None:
            jitter = torch.full((b, m, s), 0.5, device=origins.device)
        else:
            jitter = torch.rand((b, m, s), generator=generator).to(origins.device)
        span = (far - near)[..., None]
        t = near[..., None] + span * (steps + jitter) / s
        out = field((origins[:, :, None] + dirs[:, :, None] * t[..., None]).reshape(b, m * s, 3))
        out = {k: v.reshape(b, m, s, -1) for k, v in out.items() if k in ("sigma", "rgb", "semantic")}
        if self.num_importance > 0:
            w = self.composite(out["sigma"][..., 0], t, far).detach()
            edges = torch.cat([near[..., None], (t[..., 1:] + t[..., :-1]) / 2, far[..., None]], dim=-1)
            t_fine = sample_pdf(edges.detach(), w, self.num_importance, generator).detach()
            fine = field((origins[:, :, None] + dirs[:, :, None] * t_fine[..., None]).reshape(b, -1, 3))
            fine = {k: fine[k].reshape(b, m, self.num_importance, -1) for k in out}
            t_all, order = torch.sort(torch.cat([t, t_fine], dim=-1), dim=-1)
            out = {k: torch.cat([out[k], fine[k]], dim=2).gather(2, order[..., None].expand(-1, -1, -1, out[k].shape[-1]))
                   for k in out}
            t = t_all
        weights = self.composite(out["sigma"][..., 0], t, far) * hit[..., None]
        acc = weights.sum(-1)
        w_app, acc_app = (weights.detach(), acc.detach()) if detach_appearance else (weights, acc)
        rgb = (w_app[..., None] * out["rgb"]).sum(2) + (1.0 - acc_app[..., None]) * self.background_rgb
        probs = (w_app[..., None] * torch.softmax(out["semantic"], dim=-1)).sum(2)
        probs = probs + (1.0 - acc_app[..., None]) * F.one_hot(
            torch.tensor(self.background_class, device=probs.device), probs.shape[-1]).to(probs.dtype)
        fwd = dirs if forward is None else (forward if forward.dim() == 3 else forward[:, None, :].expand_as(dirs))
        axial = (dirs * fwd).sum(-1)  # cosine between the ray and the viewing axis
        depth_box = (weights * t).sum(-1) / acc.clamp(min=1e-6) * axial
        depth = torch.where(acc > 1e-4, depth_box * (BOX_SIZE_M / 2.0), torch.zeros_like(depth_box))
        return {"rgb": rgb, "semantic": probs, "depth": depth, "alpha": acc}

    def render(self, field: Field, camera: dict[str, Any], resolution: int | None = None, batch: int = 1,
               generator: torch.Generator | None = None, device: str | torch.device = "cpu",
               chunk: int = 16384) -> dict[str, torch.Tensor]:
        """Render images of a camera dict (docs/contracts.md section 3).

        Returns ``{"rgb": (B, 3, R, R), "semantic": (B, K, R, R) probabilities, "depth": (B, 1, R, R)
        metres along the viewing axis, "alpha": (B, 1, R, R)}`` float32; rays are traced in chunks.
        """
        origins, dirs, forward = camera_rays(camera, resolution)
        res = int(round(math.sqrt(origins.shape[0])))
        origins = origins.to(device)[None].expand(batch, -1, -1)
        dirs = dirs.to(device)[None].expand(batch, -1, -1)
        fwd = forward.to(device)[None].expand(batch, -1)
        parts = [self.render_rays(field, origins[:, i:i + chunk], dirs[:, i:i + chunk], fwd, generator)
                 for i in range(0, origins.shape[1], chunk)]
        out = {k: torch.cat([p[k] for p in parts], dim=1) for k in parts[0]}
        return {k: (v if v.dim() == 3 else v[..., None]).transpose(1, 2).reshape(batch, -1, res, res)
                for k, v in out.items()}


def orthographic_camera(view: str, resolution: int, size_m: float = BOX_SIZE_M) -> dict[str, Any]:
    """A camera dict for an axis-aligned orthographic view of the box, as SynHead renders them:
    ``front`` looks along +Y (the input view: image right = +X, up = +Z), ``back`` along -Y, ``left``
    along -X (it sees the person's left side, at +X), ``right`` along +X. The square view is ``size_m``
    metres wide; the camera plane is the box face (``BOX_SIZE_M / 2`` from the centre), so depth is
    measured from there.
    """
    # forward, right, up in the head frame; the camera looks along its -Z = forward
    axes = {
        "front": ((0, 1, 0), (1, 0, 0), (0, 0, 1)),
        "back": ((0, -1, 0), (-1, 0, 0), (0, 0, 1)),
        "left": ((-1, 0, 0), (0, 1, 0), (0, 0, 1)),
        "right": ((1, 0, 0), (0, -1, 0), (0, 0, 1)),
    }
    if view not in axes:
        raise ValueError(f"view must be one of {sorted(axes)}, not {view!r}")
    fwd, right, up = (np.asarray(a, dtype=np.float64) for a in axes[view])
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2] = right, up, -fwd
    c2w[:3, 3] = np.asarray(BOX_CENTER_M) - fwd * BOX_SIZE_M / 2
    return {"type": "orthographic", "cam2world": c2w.tolist(), "ortho_size_m": size_m, "resolution": resolution}
