"""Mask -> tri-plane generator: a face mask and a latent z -> w+ -> three feature planes -> a field.

The mask's classes are the config's label set (the 19 CelebAMask-HQ classes by default, or pix2pix3D's
six seg2cat classes; :func:`backend.models.config.config_labels`).

The structure follows pix2pix3D (CVPR 2023, section 3: a mask encoder gives the geometry ws, z through an
MLP gives the appearance ws, w+ drives an EG3D tri-plane synthesis, an MLP decodes point features to
density, colour and semantic logits). One change, measured on this project (docs/design.md section
4): a mask squeezed through one global vector gives an average head, so the planes are also conditioned
on the mask pixel by pixel, as PAiC-3D (2023, section 3.2) does with its input view:

* the X-Z plane is aligned with the front-view mask (backend/coords.py: the input view spans the box's
  X-Z face exactly), so a 2D U-Net on the mask produces it directly;
* the X-Y and Y-Z planes are built by pooling those pixel features along the collapsed image axis
  (PAiC-3D's feature pooling along plane axes) and expanding along depth (Y) with a learned depth code;
* a few StyleGAN2 modulated convolutions (Karras et al., CVPR 2020, section 2.2) per plane, modulated by
  w+ (one geometry w and one appearance w per layer), turn those into the planes.

Appearance: a conditional-VAE encoder (Kingma & Welling 2014; Sohn et al. 2015) sees the ground-truth RGB
during training and gives q(z | rgb, mask); at inference z comes from the user's seed, drawn from N(0, I)
or, when the model card has one, from a Gaussian fitted to the training heads' codes
(:meth:`Mask2Triplane.set_z_prior`), so the same mask with different seeds gives different skin and
hair colours.

Coordinates: ``xyz`` are normalised box coordinates in [-1, 1]^3 (backend/coords.py), X right, Y depth
(the face looks along -Y), Z up. Plane storage (all ``R x R``, ``grid_sample`` with
``align_corners=False`` so pixel centres match backend/coords.py):

* plane 0, X-Y: rows index y (row 0 at y = -1), columns index x; sampled at ``(x, y)``;
* plane 1, X-Z: image-aligned with the front mask: rows index -z (row 0 at z = +1), columns x;
  sampled at ``(x, -z)``;
* plane 2, Y-Z: rows index -z, columns index y; sampled at ``(y, -z)``.

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
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from backend.models.colour_code import CODE_DIM, ColourMapping
from backend.models.config import LabelSetError, config_labels

#: Keys every Mask2Triplane config must hold (see backend/models/config.py).
REQUIRED_KEYS = (
    "num_classes", "mask_resolution", "encoder_channels", "pixel_feature_channels", "z_dim", "w_dim",
    "num_ws_geometry", "num_ws_appearance", "plane_resolution", "plane_channels", "synthesis_channels",
    "depth_code_channels", "decoder_hidden", "density_scale", "appearance_resolution", "appearance_channels",
)


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.2)


def resample_onehot(mask_onehot: torch.Tensor, resolution: int) -> torch.Tensor:
    """Resample a one-hot (or soft) mask ``(B, K, H, W)`` float to ``(B, K, resolution, resolution)``.

    Downsampling uses area averaging (class fractions per output pixel), upsampling nearest neighbour.
    """
    h = mask_onehot.shape[-1]
    if h == resolution:
        return mask_onehot
    if h > resolution:
        return F.adaptive_avg_pool2d(mask_onehot, resolution)
    return F.interpolate(mask_onehot, size=(resolution, resolution), mode="nearest")


def ids_to_onehot(mask_ids: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Label ids ``(B, H, W)`` long in ``0..num_classes-1`` -> one-hot ``(B, num_classes, H, W)`` float32.

    Raises:
        ValueError: wrong rank or an id outside the label set.
    """
    if mask_ids.dim() != 3:
        raise ValueError(f"mask ids must be (B, H, W), got shape {tuple(mask_ids.shape)}")
    if mask_ids.numel() and (int(mask_ids.min()) < 0 or int(mask_ids.max()) >= num_classes):
        raise ValueError(f"mask ids must lie in 0..{num_classes - 1}, got {int(mask_ids.min())}..{int(mask_ids.max())}")
    return F.one_hot(mask_ids.long(), num_classes).permute(0, 3, 1, 2).float()


@dataclass
class MaskEncoding:
    """What :meth:`Mask2Triplane.encode` returns.

    Attributes:
        w_plus: ``(B, num_ws, w_dim)`` float32; the first ``num_ws_geometry`` rows come from the mask
            (geometry ws, the target of the sketch U-Net's style-vector loss), the rest from z.
        pixel_features: ``(B, pixel_feature_channels, R, R)`` float32, R = plane resolution, aligned with
            the front-view mask (row 0 = top = z +1, column 0 = left = x -1).
    """

    w_plus: torch.Tensor
    pixel_features: torch.Tensor

    def geometry_ws(self, num_ws_geometry: int) -> torch.Tensor:
        """The mask-derived part of w+: ``(B, num_ws_geometry, w_dim)``."""
        return self.w_plus[:, :num_ws_geometry]


class MaskEncoder(nn.Module):
    """One-hot mask + z -> w+ and pixel-aligned features (a small U-Net on the mask; pix2pix3D encoder).

    Input: ``mask_onehot (B, num_classes, H, W)`` float32 (any square H = W; area-resampled to
    ``mask_resolution``), ``z (B, z_dim)`` float32. Output: :class:`MaskEncoding`.
    """

    def __init__(self, cfg: dict[str, Any]):
        super().__init__()
        self.cfg = cfg
        ch = list(cfg["encoder_channels"])
        k = cfg["num_classes"]
        self.mask_resolution = cfg["mask_resolution"]
        self.plane_resolution = cfg["plane_resolution"]
        self.stem = nn.Sequential(nn.Conv2d(k, ch[0], 3, padding=1), nn.LeakyReLU(0.2),
                                  nn.Conv2d(ch[0], ch[0], 3, padding=1), nn.LeakyReLU(0.2))
        self.down = nn.ModuleList(
            nn.Sequential(nn.Conv2d(ch[i - 1], ch[i], 3, stride=2, padding=1), nn.LeakyReLU(0.2),
                          nn.Conv2d(ch[i], ch[i], 3, padding=1), nn.LeakyReLU(0.2))
            for i in range(1, len(ch)))
        # decoder back up to the plane resolution (U-Net with skips)
        self.level_res = [self.mask_resolution // (2 ** i) for i in range(len(ch))]
        self.up = nn.ModuleList()
        self.up_levels: list[int] = []
        for i in range(len(ch) - 2, -1, -1):
            if self.level_res[i] > self.plane_resolution:
                break
            cin = ch[i + 1] if not self.up else ch[self.up_levels[-1]]
            self.up.append(nn.Sequential(nn.Conv2d(cin + ch[i], ch[i], 3, padding=1), nn.LeakyReLU(0.2)))
            self.up_levels.append(i)
        last_c = ch[self.up_levels[-1]] if self.up_levels else ch[-1]
        self.to_features = nn.Conv2d(last_c, cfg["pixel_feature_channels"], 1)
        # a direct linear path from the (resampled) mask to the pixel features: the X-Z plane sees the
        # labels from the first step on, the U-Net adds context
        self.mask_shortcut = nn.Conv2d(k, cfg["pixel_feature_channels"], 1)
        nw, wd = cfg["num_ws_geometry"], cfg["w_dim"]
        self.geometry_head = nn.Sequential(nn.Flatten(), nn.Linear(ch[-1] * 16, 2 * wd), nn.LeakyReLU(0.2),
                                           nn.Linear(2 * wd, nw * wd))
        na = cfg["num_ws_appearance"]
        self.appearance_mapping = nn.Sequential(nn.Linear(cfg["z_dim"], wd), nn.LeakyReLU(0.2),
                                                nn.Linear(wd, na * wd))

    def _encode_down(self, mask_onehot: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        x = resample_onehot(mask_onehot, self.mask_resolution)
        feats = [x, self.stem(x)]
        for block in self.down:
            feats.append(block(feats[-1]))
        ws = self.geometry_head(F.adaptive_avg_pool2d(feats[-1], 4))
        return feats, ws.view(x.shape[0], self.cfg["num_ws_geometry"], self.cfg["w_dim"])  # feats[0] = the mask

    def geometry_ws(self, mask_onehot: torch.Tensor) -> torch.Tensor:
        """Mask only -> geometry ws ``(B, num_ws_geometry, w_dim)`` (skips the pixel-feature decoder)."""
        return self._encode_down(mask_onehot)[1]

    def geometry(self, mask_onehot: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mask only -> (geometry ws ``(B, num_ws_geometry, w_dim)``, pixel features ``(B, Cp, R, R)``)."""
        feats, ws = self._encode_down(mask_onehot)
        mask, feats = feats[0], feats[1:]
        y = feats[-1]
        for block, level in zip(self.up, self.up_levels):
            skip = feats[level]
            y = F.interpolate(y, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            y = block(torch.cat([y, skip], dim=1))
        y = self.to_features(y)
        if y.shape[-1] != self.plane_resolution:
            y = F.interpolate(y, size=(self.plane_resolution,) * 2, mode="bilinear", align_corners=False)
        return ws, y + self.mask_shortcut(resample_onehot(mask, self.plane_resolution))

    def forward(self, mask_onehot: torch.Tensor, z: torch.Tensor) -> MaskEncoding:
        geo, feats = self.geometry(mask_onehot)
        app = self.appearance_mapping(z).view(z.shape[0], self.cfg["num_ws_appearance"], self.cfg["w_dim"])
        return MaskEncoding(torch.cat([geo, app], dim=1), feats)


class AppearanceEncoder(nn.Module):
    """Training-only cVAE encoder: ground-truth front RGB + mask -> (mu, logvar) of z, each ``(B, z_dim)``.

    Input: ``rgb (B, 3, H, W)`` float32 in [0, 1], ``mask_onehot (B, num_classes, H', W')``; both are
    resampled to ``appearance_resolution``.
    """

    def __init__(self, cfg: dict[str, Any]):
        super().__init__()
        ch = list(cfg["appearance_channels"])
        self.resolution = cfg["appearance_resolution"]
        layers: list[nn.Module] = []
        cin = 3 + cfg["num_classes"]
        for c in ch:
            layers += [nn.Conv2d(cin, c, 3, stride=2, padding=1), nn.LeakyReLU(0.2)]
            cin = c
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(cin, 2 * cfg["z_dim"])
        with torch.no_grad():  # start with a narrow posterior so that z carries the colour from step one
            self.head.bias[cfg["z_dim"]:] = -4.0

    def forward(self, rgb: torch.Tensor, mask_onehot: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rgb = F.interpolate(rgb, size=(self.resolution,) * 2, mode="bilinear", align_corners=False, antialias=True)
        m = resample_onehot(mask_onehot, self.resolution)
        h = self.body(torch.cat([rgb, m], dim=1)).mean(dim=(2, 3))
        mu, logvar = self.head(h).chunk(2, dim=1)
        return mu, logvar.clamp(-10.0, 10.0)


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


class Mask2Triplane(nn.Module):
    """The mask-to-3D generator: :class:`MaskEncoder`, :class:`TriplaneSynthesis`, :class:`TriplaneDecoder`
    and the training-only :class:`AppearanceEncoder`, built from a config dict (backend/models/config.py).

    Typical inference::

        planes = model.planes_from_mask(mask_ids, model.sample_z(seed))  # once per job
        out = model.query(planes, xyz_chunk)                               # many times
    """

    #: Parameters whose shape a config change may grow by trailing inputs: a warm start from an earlier
    #: run zero-fills the new part (training.loop.warm_start ``expand``); today the decoder's first layer,
    #: which gains one input with ``decoder_relative_depth``.
    WARM_START_EXPANDABLE: tuple[str, ...] = ("decoder.fc1.weight",)
    #: Parts a config may add that an earlier run lacks: they keep their initialisation on a warm start.
    WARM_START_FRESH: tuple[str, ...] = ("colour_mapping.", "colour_codes")

    def __init__(self, cfg: dict[str, Any]):
        super().__init__()
        missing = [k for k in REQUIRED_KEYS if k not in cfg]
        if missing:
            raise ValueError(f"Mask2Triplane config lacks {missing}; build it from backend.models.config.PROFILES")
        self.cfg = dict(cfg)
        #: The label set the network serves (:func:`backend.models.config.config_labels`: the config's
        #: ``label_set``, celebamask-hq-19 without one); its ``mirror_ids`` drive the mirror averaging.
        self.labels = config_labels(cfg)
        self._mirror_ids = list(self.labels.mirror_ids)
        self.num_classes = cfg["num_classes"]
        self.z_dim = cfg["z_dim"]
        self.num_ws_geometry = cfg["num_ws_geometry"]
        self.num_ws = cfg["num_ws_geometry"] + cfg["num_ws_appearance"]
        self.w_dim = cfg["w_dim"]
        self.mask_encoder = MaskEncoder(cfg)
        self.synthesis = TriplaneSynthesis(cfg)
        self.decoder = TriplaneDecoder(cfg)
        self.appearance_encoder = AppearanceEncoder(cfg)
        #: With config ``appearance_code: "colours"``, z is made from a code of named colours
        #: (backend/models/colour_code.py) by :attr:`colour_mapping`, and seeds draw that code from the
        #: table of training heads' codes :attr:`colour_codes` ``(N, 18)`` (a buffer, so the weights carry it).
        self.colour_mapping: ColourMapping | None = None
        if cfg.get("appearance_code", "cvae") == "colours":
            if self.labels.subject != "human":
                raise LabelSetError(f"appearance_code 'colours' averages human class groups "
                                    f"(backend/models/colour_code.py); label set {self.labels.name!r} needs 'cvae'")
            self.colour_mapping = ColourMapping(cfg["z_dim"])
            self.register_buffer("colour_codes", torch.full((int(cfg.get("colour_code_table", 512)), CODE_DIM), 0.5))
        #: The card's ``inference.colour_albedo`` ``(N, 18)``: per row of :attr:`colour_codes`, the same head's
        #: mean *albedo* per group (its ground-truth mesh), the colours the mesh gets; None: the codes themselves.
        self.colour_albedo: torch.Tensor | None = None
        #: ``(num_classes,)`` float32 added to the semantic logits at inference (eval mode only), or None: the
        #: card's ``inference.semantic_logit_offsets`` (backend/models/loading.py), an inference setting
        self.semantic_logit_offsets: torch.Tensor | None = None
        #: The card's ``inference.mirror_average``: :meth:`planes_from_mask` returns a mirror pair of planes
        #: and :meth:`query` averages the two fields (test-time flip averaging, an inference setting).
        self.mirror_average: bool = False
        #: The card's ``inference.z_prior``: ``(mean (z_dim,), scale_tril (z_dim, z_dim))`` of the Gaussian
        #: :meth:`sample_z` draws from, or None for N(0, I) (:meth:`set_z_prior`).
        self.z_prior: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def surface_sigma(self) -> float:
        """Density sigma at the surface (occupancy logit 0): the marching-cubes level for ``sigma``."""
        return self.decoder.density_scale * math.log(2.0)

    def depth_interval(self, planes: torch.Tensor) -> torch.Tensor:
        """The depth-interval channels ``(B, 2, R, R)`` of ``planes (B, 3, C, R, R)``: centre c and
        half-thickness h along Y (normalised box units) per front-view pixel (row 0 = top, column 0 = x -1).
        Meaningful only with ``depth_interval_slope > 0`` (see the module docstring)."""
        return planes[:, 1, :2]

    def _colour_rows(self, seed: int, batch: int) -> torch.Tensor:
        if self.colour_mapping is None:
            raise RuntimeError("this generator has no colour code (config appearance_code is not 'colours')")
        g = torch.Generator().manual_seed(int(seed))
        return torch.randint(self.colour_codes.shape[0], (batch,), generator=g)

    def sample_colour_code(self, seed: int, batch: int = 1) -> torch.Tensor:
        """The colour code of a seed, ``(batch, 18)`` float32 on the CPU: rows of :attr:`colour_codes` chosen by
        a CPU generator seeded with ``seed`` (the same seed, the same code).

        Raises:
            RuntimeError: the model has no colour code (config ``appearance_code`` is not ``"colours"``).
        """
        return self.colour_codes.detach().cpu()[self._colour_rows(seed, batch)].float()

    def sample_colour_albedo(self, seed: int, batch: int = 1) -> torch.Tensor:
        """The albedo of the seed's colour code, ``(batch, 18)`` float32 sRGB: the same rows as
        :meth:`sample_colour_code` in :attr:`colour_albedo`, or the code itself when the card has none.

        Raises:
            RuntimeError: the model has no colour code.
        """
        if self.colour_albedo is None:
            return self.sample_colour_code(seed, batch)
        return self.colour_albedo[self._colour_rows(seed, batch)].float()

    def set_colour_albedo(self, table: torch.Tensor | None) -> None:
        """Use ``table (N, 18)`` float sRGB in [0, 1] (rows aligned with :attr:`colour_codes`) as the albedo of
        the codes (None: the codes themselves).

        Raises:
            ValueError: no colour code, a shape that does not match the code table, or values outside [0, 1].
        """
        if table is None:
            self.colour_albedo = None
            return
        table = torch.as_tensor(table, dtype=torch.float32)
        if self.colour_mapping is None or table.shape != self.colour_codes.shape:
            raise ValueError(f"colour albedo must be {tuple(self.colour_codes.shape) if self.colour_mapping else 'unused'}"
                             f" (one row per colour code), got {tuple(table.shape)}")
        if not bool(((table >= 0) & (table <= 1)).all()):
            raise ValueError("colour albedo values must be sRGB in [0, 1]")
        self.colour_albedo = table

    def z_from_colours(self, code: torch.Tensor) -> torch.Tensor:
        """``code (B, 18)`` sRGB in [0, 1] (backend/models/colour_code.py) -> ``z (B, z_dim)`` on the model's
        device, through :attr:`colour_mapping`.

        Raises:
            RuntimeError: the model has no colour code.
        """
        if self.colour_mapping is None:
            raise RuntimeError("this generator has no colour code (config appearance_code is not 'colours')")
        device = next(self.colour_mapping.parameters()).device
        return self.colour_mapping(code.to(device))

    def posterior_z(self, rgb: torch.Tensor, mask_onehot: torch.Tensor) -> torch.Tensor:
        """The code of a ground-truth view, ``(B, z_dim)``: z of its colour code with a colour-code generator,
        else the cVAE posterior mean. ``rgb (B, 3, H, W)`` float32 sRGB in [0, 1], ``mask_onehot (B, K, H',
        W')`` (how evaluation renders a known head)."""
        if self.colour_mapping is not None:
            from backend.models.colour_code import colour_code

            return self.z_from_colours(colour_code(rgb, mask_onehot))
        return self.appearance_encoder(rgb, mask_onehot)[0]

    def sample_z(self, seed: int, batch: int = 1, device: str | torch.device = "cpu") -> torch.Tensor:
        """The appearance code of a seed, ``(batch, z_dim)`` float32. With a colour code
        (:meth:`sample_colour_code`), z of the seed's colour code; otherwise eps ~ N(0, I) from a CPU generator
        seeded with ``seed``, mapped through :attr:`z_prior` when the card has one (``mean + scale_tril @
        eps``), else eps itself. The same seed always gives the same code."""
        if self.colour_mapping is not None:
            with torch.no_grad():
                return self.z_from_colours(self.sample_colour_code(seed, batch)).to(device)
        g = torch.Generator().manual_seed(int(seed))
        eps = torch.randn(batch, self.z_dim, generator=g)
        if self.z_prior is not None:
            mean, scale_tril = self.z_prior
            eps = mean[None] + eps @ scale_tril.T
        return eps.to(device)

    def set_z_prior(self, mean: torch.Tensor | None, scale_tril: torch.Tensor | None = None) -> None:
        """Use the Gaussian ``N(mean, scale_tril scale_tril^T)`` for :meth:`sample_z` (None: N(0, I)).

        ``mean (z_dim,)``, ``scale_tril (z_dim, z_dim)`` lower-triangular float32: a fit of the codes the
        appearance encoder gives the training heads (the aggregate posterior; training/prior_fit.py). The
        KL term only pulls each posterior towards N(0, I); the codes the decoder learnt lie elsewhere, so
        N(0, I) samples decode to near-average colours, and a fitted prior samples where the codes are
        (ex-post density estimation: Ghosh et al., "From variational to deterministic autoencoders", ICLR
        2020, section 4).

        Raises:
            ValueError: wrong shapes or non-finite values.
        """
        if mean is None:
            self.z_prior = None
            return
        mean = torch.as_tensor(mean, dtype=torch.float32)
        scale_tril = torch.as_tensor(scale_tril, dtype=torch.float32)
        if mean.shape != (self.z_dim,) or scale_tril.shape != (self.z_dim, self.z_dim):
            raise ValueError(f"z prior must be mean ({self.z_dim},) and scale_tril ({self.z_dim}, {self.z_dim}), "
                             f"got {tuple(mean.shape)} and {tuple(scale_tril.shape)}")
        if not (torch.isfinite(mean).all() and torch.isfinite(scale_tril).all()):
            raise ValueError("z prior has non-finite values")
        self.z_prior = (mean, torch.tril(scale_tril))

    def _check_mask(self, mask_onehot: torch.Tensor) -> None:
        if mask_onehot.dim() != 4 or mask_onehot.shape[1] != self.num_classes or mask_onehot.shape[2] != mask_onehot.shape[3]:
            raise ValueError(f"mask_onehot must be (B, {self.num_classes}, H, H) float, got {tuple(mask_onehot.shape)}")

    def encode(self, mask_onehot: torch.Tensor, z: torch.Tensor) -> MaskEncoding:
        """``mask_onehot (B, K, H, H)`` float32 + ``z (B, z_dim)`` -> :class:`MaskEncoding` (w+, pixel features).

        Raises:
            ValueError: wrong shapes.
        """
        self._check_mask(mask_onehot)
        if z.dim() != 2 or z.shape[1] != self.z_dim or z.shape[0] != mask_onehot.shape[0]:
            raise ValueError(f"z must be (B={mask_onehot.shape[0]}, {self.z_dim}), got {tuple(z.shape)}")
        return self.mask_encoder(mask_onehot, z)

    def geometry_ws(self, mask_onehot: torch.Tensor) -> torch.Tensor:
        """Mask-derived w+ rows ``(B, num_ws_geometry, w_dim)`` (the sketch U-Net's L_SV target)."""
        self._check_mask(mask_onehot)
        return self.mask_encoder.geometry_ws(mask_onehot)

    def synthesize(self, encoding: MaskEncoding) -> torch.Tensor:
        """:class:`MaskEncoding` -> planes ``(B, 3, plane_channels, R, R)`` float32. With the depth-interval
        prior, its two channels are synthesised with the appearance ws of z = 0 (seed-independent shape)."""
        neutral = None
        if self.decoder.interval_slope:
            w = encoding.w_plus
            zero = w.new_zeros(w.shape[0], self.z_dim)
            app = self.mask_encoder.appearance_mapping(zero).view(w.shape[0], -1, self.w_dim)
            neutral = torch.cat([w[:, :self.num_ws_geometry], app], dim=1)
        return self.synthesis(encoding.w_plus, encoding.pixel_features, neutral)

    def query(self, planes: torch.Tensor, xyz: torch.Tensor) -> dict[str, torch.Tensor]:
        """Decode ``xyz (B, N, 3)`` normalised box coordinates on ``planes (B, 3, C, R, R)``.

        Returns ``{"sigma": (B, N, 1) >= 0, "rgb": (B, N, 3) linear in [0, 1], "semantic": (B, N, K) logits,
        "occupancy_logit": (B, N, 1)}``. Points outside the box see zero plane features. Call it in
        chunks of a few hundred thousand points under ``torch.no_grad()`` for dense grids.

        In eval mode, :attr:`semantic_logit_offsets` (when set) is added to the semantic logits: logit
        adjustment (Menon et al., "Long-tail learning via logit adjustment", ICLR 2021). Training weights
        the small face parts' cross-entropy x3 and aims a quarter of the render rays at them, which paints
        them wider than the mask has them (docs/models.md); density and colour are unchanged.

        ``planes`` may be a mirror pair ``(B, 2, 3, C, R, R)`` (:meth:`planes_from_onehot`): then the
        result is the pair's mean field, and ``semantic`` holds log-probabilities (same argmax use).
        """
        if planes.dim() == 6:
            return self._query_mirror_pair(planes, xyz)
        out = self.decoder(planes, xyz)
        if self.semantic_logit_offsets is not None and not self.training:
            out = {**out, "semantic": out["semantic"] + self.semantic_logit_offsets.to(out["semantic"])}
        return out

    def planes_from_onehot(self, mask_onehot: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``mask_onehot (B, K, H, H)`` float32 (K = ``num_classes``) + ``z (B, z_dim)`` -> planes
        ``(B, 3, C, R, R)``, or with :attr:`mirror_average` a mirror pair ``(B, 2, 3, C, R, R)``: ``[:, 0]``
        the mask's planes, ``[:, 1]`` the planes of the mirrored mask (columns flipped, left/right labels
        swapped by the label set's ``mirror_ids``; for a set without left/right classes only flipped) with
        the same z.
        :meth:`query` averages the pair's two fields, the second one mirrored back (x -> -x).

        Test-time flip averaging (standard for segmentation; not in pix2pix3D or S3D): the mirrored mask is
        a face as plausible as the input, so the generator's errors that are not mirror-symmetric average
        out. It doubles the cost of the planes and of every query.

        Raises:
            ValueError: wrong shapes (:meth:`encode`).
        """
        planes = self.synthesize(self.encode(mask_onehot, z))
        if not self.mirror_average:
            return planes
        mirrored = mask_onehot.flip(-1)[:, self._mirror_ids]
        return torch.stack([planes, self.synthesize(self.encode(mirrored, z))], dim=1)

    @torch.no_grad()
    def planes_from_mask(self, mask_ids: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Label ids ``(B, H, H)`` long + ``z (B, z_dim)`` -> planes (no gradients), shaped as
        :meth:`planes_from_onehot` says: ``(B, 3, C, R, R)``, a mirror pair ``(B, 2, 3, C, R, R)`` with
        :attr:`mirror_average`."""
        onehot = ids_to_onehot(mask_ids, self.num_classes).to(z.device)
        return self.planes_from_onehot(onehot, z)

    def _query_mirror_pair(self, pair: torch.Tensor, xyz: torch.Tensor) -> dict[str, torch.Tensor]:
        """The mean field of a mirror pair ``(B, 2, 3, C, R, R)`` (:meth:`planes_from_onehot`): occupancy
        logits and colours averaged, the surface stays at logit 0; the semantic output is the log of the mean
        of the two softmaxes (left/right labels of the mirrored field swapped back)."""
        if pair.shape[1] != 2:
            raise ValueError(f"a mirror pair of planes is (B, 2, 3, C, R, R), got {tuple(pair.shape)}")
        a = self.query(pair[:, 0], xyz)
        b = self.query(pair[:, 1], xyz * xyz.new_tensor([-1.0, 1.0, 1.0]))
        return self._mean_with_mirrored(a, b)

    def query_symmetric(self, planes: torch.Tensor, xyz: torch.Tensor) -> dict[str, torch.Tensor]:
        """The field made exactly mirror-symmetric about the plane x = 0: the mean of :meth:`query` at
        ``xyz`` and at ``(-x, y, z)``, left/right labels of the mirrored side swapped back (so a left eye
        stays a left eye). ``planes`` as :meth:`query` takes them; same outputs as :meth:`query` (the
        semantic output as log-probabilities). For an artist who wants a symmetric head."""
        a = self.query(planes, xyz)
        b = self.query(planes, xyz * xyz.new_tensor([-1.0, 1.0, 1.0]))
        return self._mean_with_mirrored(a, b)

    def _mean_with_mirrored(self, a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Mean of a field ``a`` and a field ``b`` queried at the mirrored points: occupancy logits (the
        surface stays at logit 0) and colours averaged, the semantic output the log of the mean of the two
        softmaxes with ``b``'s left/right labels swapped."""
        occ = (a["occupancy_logit"] + b["occupancy_logit"]) / 2
        probs = (a["semantic"].softmax(-1) + b["semantic"][..., self._mirror_ids].softmax(-1)) / 2
        return {"occupancy_logit": occ, "sigma": self.decoder.density_scale * F.softplus(occ),
                "rgb": (a["rgb"] + b["rgb"]) / 2, "semantic": probs.clamp_min(1e-12).log()}

    def forward(self, mask_onehot: torch.Tensor, z: torch.Tensor, xyz: torch.Tensor) -> dict[str, torch.Tensor]:
        """Encode, synthesise and query in one call (for DistributedDataParallel); adds ``planes``, ``w_plus``."""
        enc = self.encode(mask_onehot, z)
        planes = self.synthesize(enc)
        out = self.query(planes, xyz)
        out["planes"] = planes
        out["w_plus"] = enc.w_plus
        return out
