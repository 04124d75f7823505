"""Sketch -> face mask: the S3D U-Net (S3D, CVPRW 2025, section 3.2-3.3), with the config's label set
(the 19 CelebAMask-HQ classes by default, :func:`backend.models.config.config_labels`).

Seven encoder-decoder pairs with skip connections (U-Net, Ronneberger et al. 2015); the logits come back
at the input resolution; a head on the bottleneck gives a style vector shaped like the mask encoder's
geometry w+ (``num_ws_geometry x w_dim``, 7 x 512 in the ``paper`` profile), trained with the
style-vector loss L_SV = MSE(style, geometry w+ of the trained mask encoder on the ground-truth mask).

The ``lite`` profile resamples the 512 px sketch to ``internal_resolution`` (128 px) and works there;
``paper`` works at 512 px. Images are ``(B, 1, H, W)`` float32 in [0, 1] with 1 = white paper; the
network sees ink = 1 - sketch.

Inference may average the prediction with that of the mirrored sketch (``mirror_average``, set from the
model card's ``inference`` section by backend/models/loading.py): faces are near-symmetric, so the
mirror image is a second, slightly different view of the same drawing.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from backend.models.config import config_labels

REQUIRED_KEYS = ("num_classes", "internal_resolution", "channels", "num_ws_geometry", "w_dim")


def _conv_bn(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2)]


class SketchToMask(nn.Module):
    """The S3D U-Net: ``forward(sketch (B, 1, H, W)) -> (logits (B, K, H, W), style (B, num_ws_geometry, w_dim))``.

    ``channels`` has 8 entries: the stem width at ``internal_resolution`` and the widths of the seven
    encoder levels (each halves the resolution: 128 px -> 1 px in ``lite``, 512 px -> 4 px in ``paper``).
    """

    #: Parameters whose shape depends on ``internal_resolution`` (the style head reads the pooled
    #: bottleneck): a warm start across resolutions re-initialises them (training.loop.warm_start ``refit``).
    WARM_START_REFIT: tuple[str, ...] = ("style_head.",)

    def __init__(self, cfg: dict[str, Any]):
        super().__init__()
        missing = [k for k in REQUIRED_KEYS if k not in cfg]
        if missing:
            raise ValueError(f"SketchToMask config lacks {missing}; build it from backend.models.config.PROFILES")
        ch = list(cfg["channels"])
        if len(ch) != 8:
            raise ValueError(f"SketchToMask needs 8 channel widths (stem + 7 levels), got {len(ch)}")
        res = int(cfg["internal_resolution"])
        if res % 128:
            raise ValueError(f"internal_resolution must be a multiple of 128 (7 halvings), got {res}")
        self.cfg = dict(cfg)
        #: The label set the network serves (:func:`backend.models.config.config_labels`: the config's
        #: ``label_set``, celebamask-hq-19 without one); its ``mirror_ids`` drive the mirror averaging.
        self.labels = config_labels(cfg)
        #: predict_ids / label_scores average with the mirrored sketch (an inference setting, not architecture)
        self.mirror_average = False
        #: ``(K,)`` float32 added to :meth:`label_scores` (the card's ``inference.semantic_logit_offsets``,
        #: fitted on held-out heads by training/calibration.py); a plain attribute, not a weight
        self.semantic_logit_offsets: torch.Tensor | None = None
        self.num_classes = cfg["num_classes"]
        self.internal_resolution = res
        self.stem = nn.Sequential(*_conv_bn(1, ch[0]), *_conv_bn(ch[0], ch[0]))
        self.encoder = nn.ModuleList(nn.Sequential(*_conv_bn(ch[i], ch[i + 1], stride=2), *_conv_bn(ch[i + 1], ch[i + 1]))
                                     for i in range(7))
        self.decoder = nn.ModuleList(nn.Sequential(*_conv_bn(ch[i + 1] + ch[i], ch[i]), *_conv_bn(ch[i], ch[i]))
                                     for i in range(6, -1, -1))
        self.head = nn.Conv2d(ch[0], self.num_classes, 1)
        self.bottleneck_res = res // 128
        pool = min(self.bottleneck_res, 4)
        self.style_pool = pool
        nw, wd = cfg["num_ws_geometry"], cfg["w_dim"]
        self.style_head = nn.Sequential(nn.Flatten(), nn.Linear(ch[7] * pool * pool, 2 * wd), nn.LeakyReLU(0.2),
                                        nn.Linear(2 * wd, nw * wd))

    def forward(self, sketch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``sketch (B, 1, H, W)`` float32 in [0, 1], 1 = paper -> ``(logits (B, K, H, W), style (B, nw, w_dim))``.

        Raises:
            ValueError: not a ``(B, 1, H, W)`` tensor.
        """
        if sketch.dim() != 4 or sketch.shape[1] != 1:
            raise ValueError(f"sketch must be (B, 1, H, W) float in [0, 1] (1 = white paper), got {tuple(sketch.shape)}")
        h, w = sketch.shape[-2:]
        x = 1.0 - sketch
        r = self.internal_resolution
        if (h, w) != (r, r):
            x = F.interpolate(x, size=(r, r), mode="bilinear", align_corners=False, antialias=h > r or w > r)
        skips = [self.stem(x)]
        for block in self.encoder:
            skips.append(block(skips[-1]))
        bottleneck = skips[-1]
        style = self.style_head(F.adaptive_avg_pool2d(bottleneck, self.style_pool))
        style = style.view(x.shape[0], self.cfg["num_ws_geometry"], self.cfg["w_dim"])
        y = bottleneck
        for block, skip in zip(self.decoder, reversed(skips[:-1])):
            y = F.interpolate(y, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            y = block(torch.cat([y, skip], dim=1))
        logits = self.head(y)
        if (h, w) != (r, r):
            logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
        return logits, style

    @torch.no_grad()
    def label_scores(self, sketch: torch.Tensor, mirror_average: bool | None = None) -> torch.Tensor:
        """Per-class scores ``(B, K, H, W)`` float32 for ``sketch (B, 1, H, W)`` (as :meth:`forward`).

        Without mirror averaging these are the logits. With it (``mirror_average``, default the model's
        :attr:`mirror_average`), the log of the mean of two softmaxes: the sketch's and the mirrored
        sketch's, mirrored back with the left/right labels swapped (the ``mirror_ids`` of :attr:`labels`).
        Test-time flip averaging, a standard segmentation practice (not in S3D); it costs a second pass.
        Last, :attr:`semantic_logit_offsets` (when set) is added per class.
        """
        scores = self.forward(sketch)[0]
        if self.mirror_average if mirror_average is None else mirror_average:
            mirrored = self.forward(sketch.flip(-1))[0].flip(-1)[:, list(self.labels.mirror_ids)]
            scores = ((scores.softmax(1) + mirrored.softmax(1)) / 2).clamp_min(1e-12).log()
        if self.semantic_logit_offsets is not None:
            scores = scores + self.semantic_logit_offsets.to(scores)[:, None, None]
        return scores

    @torch.no_grad()
    def predict_ids(self, sketch: torch.Tensor, mirror_average: bool | None = None) -> torch.Tensor:
        """Label ids ``(B, H, W)`` long: argmax of :meth:`label_scores`."""
        return self.label_scores(sketch, mirror_average).argmax(dim=1)
