"""An appearance code of named colours: the mean colour of six class groups of a head, and its map to z.

Why (docs/models.md, "Appearance"): the conditional-VAE code of :class:`~backend.models.mask2triplane.
AppearanceEncoder` sees the whole ground-truth image, so it also carries what the mask already says about
the head; at inference no seed's code agrees with the mask that way, and the decoder answers with flat or
arbitrary colours. A code that holds *only* colours cannot disagree with a mask: during training it is
measured on the ground-truth front view, at inference it is drawn by the seed from a table of training
heads' codes (so it follows SynHead's distribution of hair, skin, eye, lip, brow and cloth colours) or set
by the user's colour picks. A small MLP maps it to the generator's z, whose path to the appearance ws is
unchanged (pix2pix3D's mapping network, CVPR 2023 section 3.1).

The code: ``(B, 18)`` float32, six groups x sRGB in [0, 1] (sRGB-encoded values, as SynHead's PNGs and
the colour picks are), in the order of :data:`CODE_GROUPS`.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from backend.colour_picks import PICK_GROUPS
from backend.labels import LABEL_IDS

#: Class groups of the code, in code order, and the label names each averages: the groups an artist can
#: pick (backend/colour_picks.py), so a pick sets exactly one group of the code.
CODE_GROUPS: dict[str, tuple[str, ...]] = PICK_GROUPS
CODE_DIM = 3 * len(CODE_GROUPS)
#: sRGB of a group the view does not show (closed eyes, no clothes in frame): mid grey.
ABSENT_COLOUR = 0.5
#: Fewest pixels (at the code's resolution) a group needs to count as present.
MIN_PIXELS = 2.0


def group_index(group: str) -> slice:
    """Slice of the code that holds ``group``'s sRGB.

    Raises:
        KeyError: ``group`` is not one of :data:`CODE_GROUPS`.
    """
    i = list(CODE_GROUPS).index(group) if group in CODE_GROUPS else None
    if i is None:
        raise KeyError(f"unknown colour group {group!r}; the code holds {list(CODE_GROUPS)}")
    return slice(3 * i, 3 * i + 3)


def colour_code(rgb: torch.Tensor, mask_onehot: torch.Tensor) -> torch.Tensor:
    """Per-group mean colour of a view: ``rgb (B, 3, H, W)`` float32 sRGB in [0, 1] and ``mask_onehot
    (B, 19, H', W')`` class fractions (any resolution; resampled to H x W by area / bilinear) -> ``(B, 18)``
    float32, :data:`ABSENT_COLOUR` for groups with fewer than :data:`MIN_PIXELS` pixels.

    Raises:
        ValueError: wrong shapes.
    """
    if rgb.dim() != 4 or rgb.shape[1] != 3 or mask_onehot.dim() != 4 or mask_onehot.shape[0] != rgb.shape[0]:
        raise ValueError(f"rgb must be (B, 3, H, W) and mask_onehot (B, C, H', W'), got {tuple(rgb.shape)} "
                         f"and {tuple(mask_onehot.shape)}")
    m = mask_onehot
    if m.shape[-2:] != rgb.shape[-2:]:
        m = F.interpolate(m, size=rgb.shape[-2:], mode="bilinear", align_corners=False)
    parts = []
    for names in CODE_GROUPS.values():
        w = m[:, [LABEL_IDS[n] for n in names]].sum(1, keepdim=True)  # (B, 1, H, W)
        total = w.sum(dim=(2, 3))                                      # (B, 1)
        mean = (rgb * w).sum(dim=(2, 3)) / total.clamp_min(1e-6)       # (B, 3)
        parts.append(torch.where(total >= MIN_PIXELS, mean, torch.full_like(mean, ABSENT_COLOUR)))
    return torch.cat(parts, dim=1)


class ColourMapping(nn.Module):
    """``code (B, 18)`` sRGB in [0, 1] -> ``z (B, z_dim)`` float32: a 2-layer MLP (LeakyReLU 0.2), the input
    centred at 0.5 so that a mid-grey code starts near z = 0."""

    def __init__(self, z_dim: int, hidden: int = 128):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(CODE_DIM, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, z_dim))

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        if code.dim() != 2 or code.shape[1] != CODE_DIM:
            raise ValueError(f"colour code must be (B, {CODE_DIM}), got {tuple(code.shape)}")
        return self.net(code - 0.5)


def checked_albedo(table, codes: torch.Tensor | None) -> torch.Tensor:
    """``table`` as float32 ``(N, 18)``, the albedo of each row of the code table ``codes (N, 18)``.

    Raises:
        ValueError: no code table (a generator without a colour code), a shape other than the code table's,
            or values outside [0, 1].
    """
    table = torch.as_tensor(table, dtype=torch.float32)
    if codes is None or table.shape != codes.shape:
        raise ValueError(f"colour albedo must be {tuple(codes.shape) if codes is not None else 'unused'} (one row per "
                         f"colour code), got {tuple(table.shape)}")
    if not bool(((table >= 0) & (table <= 1)).all()):
        raise ValueError("colour albedo values must be sRGB in [0, 1]")
    return table


def with_picks(code: torch.Tensor, picks_srgb: dict[str, tuple[float, float, float]]) -> torch.Tensor:
    """``code (B, 18)`` with the picked groups set: ``picks_srgb`` maps a group of :data:`CODE_GROUPS` to an
    sRGB triple in [0, 1]. Returns a new tensor.

    Raises:
        KeyError: a group the code does not hold.
    """
    out = code.clone()
    for group, srgb in picks_srgb.items():
        out[:, group_index(group)] = torch.as_tensor(srgb, dtype=out.dtype, device=out.device)
    return out
