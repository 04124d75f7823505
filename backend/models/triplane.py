"""The tri-plane half of the generator: StyleGAN2 modulated convolutions (Karras et al., CVPR 2020, section
2.2), the tri-plane synthesis driven by w+ and the mask's pixel features, and the MLP decoder from sampled
plane features to density, colour and semantic logits (EG3D, CVPR 2022, section 4; pix2pix3D section 3).

Part of the mask -> tri-plane generator (backend/models/mask2triplane.py describes the planes' storage).

Depth-interval prior (config ``depth_interval_slope`` k > 0; this project's addition, measured in
docs/models.md): seen from the front, a head is nearly "one interval deep": along the viewing ray
through front-view pixel (x, z) the occupied part is [y_front, y_back], which SynHead's front and back
depth maps give exactly (99 % of its uniform occupancy points agree). Channels 0 and 1 of the X-Z plane
are trained to hold that interval's centre c and half-thickness h (normalised units; h < 0 off the
silhouette), and the decoder adds ``k * (h - |y - c|)`` to its occupancy logit, so the MLP only learns
the residual (ears, overhanging hair). The X-Z plane is the pixel-aligned one, so the mask's outline
reaches the silhouette and the depth at once, instead of through the blurred depth expansion of the
two other planes. All plane channels, these two included, stay outputs of the w+-modulated synthesis.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from backend.models.mask_encoder import _lrelu


class ModulatedConv2d(nn.Module):
    """StyleGAN2 modulated convolution (Karras et al., CVPR 2020, eq. 1-3) with two style inputs.

    The per-input-channel scale is ``A_g(w_geometry) + A_a(w_appearance)`` (affine maps initialised to
    1); the weights are demodulated unless ``demodulate=False`` (the final to-plane layer).
    Input ``(B, C_in, H, W)`` -> ``(B, C_out, H, W)``.
    """

    def __init__(self, cin: int, cout: int, kernel: int, w_dim: int, demodulate: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, kernel, kernel) / math.sqrt(cin * kernel * kernel))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.affine_geometry = nn.Linear(w_dim, cin)
        self.affine_appearance = nn.Linear(w_dim, cin)
        for affine, bias in ((self.affine_geometry, 1.0), (self.affine_appearance, 0.0)):
            nn.init.normal_(affine.weight, 0.0, 1.0 / math.sqrt(w_dim))  # StyleGAN2: unit-variance styles
            nn.init.constant_(affine.bias, bias)
        self.demodulate = demodulate
        self.padding = kernel // 2

    def forward(self, x: torch.Tensor, w_geometry: torch.Tensor, w_appearance: torch.Tensor) -> torch.Tensor:
        # StyleGAN2's non-fused form: scale the input, convolve, rescale the output (same result as
        # modulating and demodulating the weights per sample, and a plain convolution on every device)
        style = self.affine_geometry(w_geometry) + self.affine_appearance(w_appearance)  # (B, Cin)
        out = F.conv2d(x * style[:, :, None, None], self.weight, padding=self.padding)
        if self.demodulate:
            w2 = self.weight.pow(2).sum(dim=(2, 3))  # (Cout, Cin)
            out = out * torch.rsqrt(style.pow(2) @ w2.t() + 1e-8)[:, :, None, None]
        return out + self.bias[None, :, None, None]


class TriplaneSynthesis(nn.Module):
    """w+ and pixel-aligned mask features -> tri-plane ``(B, 3, plane_channels, R, R)`` float32.

    The X-Z plane starts from the pixel features themselves; X-Y and Y-Z from the features pooled (mean
    and max) along image rows or columns, expanded along depth and concatenated with a learned depth code
    (PAiC-3D section 3.2). Each plane then goes through ``num_ws_geometry - 1`` modulated 3x3 convolutions
    (at ``synthesis_resolution``, then bilinearly upsampled and added to the full-resolution input, so
    the pixel-aligned detail reaches the planes unblurred) and a modulated 1x1 to-plane layer; layer i is
    modulated by geometry w i and appearance w i. The last appearance w also adds a constant per plane
    channel (a short path for colour, which the lite decoder reads next to the local features).
    """

    def __init__(self, cfg: dict[str, Any]):
        super().__init__()
        self.cfg = cfg
        r, cp, s = cfg["plane_resolution"], cfg["pixel_feature_channels"], cfg["synthesis_channels"]
        cd, wd = cfg["depth_code_channels"], cfg["w_dim"]
        self.num_layers = cfg["num_ws_geometry"]
        self.synthesis_resolution = int(cfg.get("synthesis_resolution", r))
        if cfg["num_ws_appearance"] != self.num_layers:
            raise ValueError("num_ws_appearance must equal num_ws_geometry (one of each per synthesis layer)")
        self.depth_code_xy = nn.Parameter(torch.randn(1, cd, r, 1) * 0.5)  # varies along y (rows)
        self.depth_code_yz = nn.Parameter(torch.randn(1, cd, 1, r) * 0.5)  # varies along y (columns)
        self.base = nn.ModuleList([nn.Conv2d(2 * cp + cd, s, 1), nn.Conv2d(cp, s, 1), nn.Conv2d(2 * cp + cd, s, 1)])
        self.convs = nn.ModuleList(
            nn.ModuleList(ModulatedConv2d(s, s, 3, wd) for _ in range(self.num_layers - 1)) for _ in range(3))
        self.to_plane = nn.ModuleList(ModulatedConv2d(s, cfg["plane_channels"], 1, wd, demodulate=False)
                                      for _ in range(3))
        # the last appearance w also shifts every plane channel by a constant: a short path for colour
        self.appearance_bias = nn.Linear(wd, 3 * cfg["plane_channels"])
        nn.init.normal_(self.appearance_bias.weight, 0.0, 0.1 / math.sqrt(wd))
        nn.init.zeros_(self.appearance_bias.bias)

    def _plane(self, p: int, x: torch.Tensor, w_plus: torch.Tensor) -> torch.Tensor:
        """One plane's synthesis: base 1x1 conv, modulated 3x3 convs at ``synthesis_resolution``, to-plane."""
        r, rs, ng = x.shape[-1], self.synthesis_resolution, self.cfg["num_ws_geometry"]
        base = _lrelu(self.base[p](x))
        h = F.adaptive_avg_pool2d(base, rs) if rs < r else base
        for i, conv in enumerate(self.convs[p]):
            h = _lrelu(conv(h, w_plus[:, i], w_plus[:, ng + i]))
        if rs < r:
            h = F.interpolate(h, size=(r, r), mode="bilinear", align_corners=False)
        return self.to_plane[p](h + base, w_plus[:, ng - 1], w_plus[:, -1])

    def forward(self, w_plus: torch.Tensor, pixel_features: torch.Tensor,
                w_plus_neutral: torch.Tensor | None = None) -> torch.Tensor:
        """``w_plus (B, num_ws, w_dim)``, ``pixel_features (B, Cp, R, R)`` -> planes ``(B, 3, C, R, R)``.

        ``w_plus_neutral``: the same geometry ws with the appearance ws of z = 0. When given, X-Z
        channels 0 and 1 (the depth interval, module docstring) are synthesised with it, so that the
        interval, and with it the shape, does not change with the seed: the cVAE code sees the
        ground-truth render, whose shading carries shape, and would otherwise leak shape into z.
        """
        b, cp, r, _ = pixel_features.shape
        f = pixel_features
        # pool along image rows (z) -> a function of x; along columns (x) -> a function of z
        along_x = torch.cat([f.mean(dim=2), f.amax(dim=2)], dim=1)  # (B, 2Cp, R_x)
        along_z = torch.cat([f.mean(dim=3), f.amax(dim=3)], dim=1)  # (B, 2Cp, R_z), index 0 = top = z +1
        xy = torch.cat([along_x[:, :, None, :].expand(b, 2 * cp, r, r),
                        self.depth_code_xy.expand(b, -1, r, r)], dim=1)  # rows y, cols x
        yz = torch.cat([along_z[:, :, :, None].expand(b, 2 * cp, r, r),
                        self.depth_code_yz.expand(b, -1, r, r)], dim=1)  # rows -z, cols y
        planes = torch.stack([self._plane(p, x, w_plus) for p, x in enumerate((xy, f, yz))], dim=1)
        planes = planes + self.appearance_bias(w_plus[:, -1]).view(b, 3, -1, 1, 1)
        if w_plus_neutral is not None:
            interval = self._plane(1, f, w_plus_neutral)[:, :2]
            interval = interval + self.appearance_bias(w_plus_neutral[:, -1]).view(b, 3, -1, 1, 1)[:, 1, :2]
            planes = torch.cat([planes[:, :1], torch.cat([interval, planes[:, 1, 2:]], dim=1)[:, None],
                                planes[:, 2:]], dim=1)
        return planes


class TriplaneDecoder(nn.Module):
    """Tri-plane features at 3D points -> occupancy logit, sigma, RGB and semantic logits (pix2pix3D's MLP).

    The three bilinear samples are concatenated (3 x plane_channels; plus the point's coordinates when
    ``decoder_xyz`` is set, a cheap shape prior that speeds up CPU training) and go through a
    2-hidden-layer softplus MLP. With ``depth_interval_slope`` k > 0 the occupancy logit also gets
    ``k * (h - |y - c|)`` from X-Z plane channels 0, 1 (the depth-interval prior, module docstring), and
    with ``decoder_relative_depth`` (which needs that prior) the MLP also sees the point's place in the
    interval (:meth:`relative_depth`).
    ``sigma = density_scale * softplus(occupancy_logit)`` (per unit of normalised box length),
    so the surface ``occupancy_logit = 0`` sits at ``sigma = density_scale * ln 2``
    (:attr:`Mask2Triplane.surface_sigma`).
    """

    def __init__(self, cfg: dict[str, Any]):
        super().__init__()
        c, h, k = cfg["plane_channels"], cfg["decoder_hidden"], cfg["num_classes"]
        self.num_classes = k
        self.density_scale = float(cfg["density_scale"])
        self.with_xyz = bool(cfg.get("decoder_xyz", False))
        self.plane_channels = c
        self.interval_slope = float(cfg.get("depth_interval_slope", 0.0))
        self.with_relative_depth = bool(cfg.get("decoder_relative_depth", False)) and self.interval_slope > 0
        self.fc1 = nn.Linear(3 * c + (3 if self.with_xyz else 0) + (1 if self.with_relative_depth else 0), h)
        self.fc2 = nn.Linear(h, h)
        self.out = nn.Linear(h, 1 + 3 + k)

    @staticmethod
    def sample_planes(planes: torch.Tensor, xyz: torch.Tensor) -> torch.Tensor:
        """Bilinear features ``(B, N, 3*C)`` of ``planes (B, 3, C, R, R)`` at ``xyz (B, N, 3)`` in [-1, 1]."""
        b, _, c, r, _ = planes.shape
        x, y, z = xyz[..., 0], xyz[..., 1], xyz[..., 2]
        grid = torch.stack([torch.stack([x, y], -1), torch.stack([x, -z], -1), torch.stack([y, -z], -1)], dim=1)
        feats = F.grid_sample(planes.reshape(b * 3, c, r, r), grid.reshape(b * 3, 1, -1, 2),
                              mode="bilinear", padding_mode="zeros", align_corners=False)  # (B*3, C, 1, N)
        return feats.view(b, 3 * c, -1).transpose(1, 2)

    @staticmethod
    def relative_depth(interval: torch.Tensor, xyz: torch.Tensor) -> torch.Tensor:
        """Where a point lies in its pixel's depth interval: ``(B, N, 1)``, -1 on the front surface
        (facing -Y), 0 at the centre, +1 on the back surface, clamped to [-2, 2].

        The X-Z plane is shared by the front and the back of the head; this one number tells the MLP which
        side a point is on, so the face's labels and colours need not leak onto the back of the head.
        ``interval (B, N, 2)`` holds (c, h) in normalised units, ``xyz (B, N, 3)``.
        """
        half = interval[..., 1:2].abs() + 0.02  # 4 mm floor: thin or empty intervals stay finite
        return ((xyz[..., 1:2] - interval[..., 0:1]) / half).clamp(-2.0, 2.0)

    def forward(self, planes: torch.Tensor, xyz: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.sample_planes(planes, xyz)
        interval = feats[..., self.plane_channels:self.plane_channels + 2]  # X-Z plane channels 0, 1: c, h
        if self.with_xyz:
            feats = torch.cat([feats, xyz], dim=-1)
        if self.with_relative_depth:
            feats = torch.cat([feats, self.relative_depth(interval, xyz)], dim=-1)
        h = F.softplus(self.fc1(feats))
        h = F.softplus(self.fc2(h))
        out = self.out(h)
        occ = out[..., :1]
        if self.interval_slope:
            occ = occ + self.interval_slope * (interval[..., 1:2] - (xyz[..., 1:2] - interval[..., 0:1]).abs())
        return {"occupancy_logit": occ, "sigma": self.density_scale * F.softplus(occ),
                "rgb": torch.sigmoid(out[..., 1:4]), "semantic": out[..., 4:]}
