"""The generator's encoders: the label map -> geometry w+ and pixel-aligned features (:class:`MaskEncoder`),
and the training-only cVAE appearance encoder (:class:`AppearanceEncoder`); mask resampling helpers.

Part of the mask -> tri-plane generator (backend/models/mask2triplane.py, whose docstring describes the whole
network and its sources: pix2pix3D, CVPR 2023 section 3; PAiC-3D 2023 section 3.2).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F


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
