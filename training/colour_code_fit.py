"""Start a generator with a colour code (backend/models/colour_code.py) from one trained with the cVAE code.

Two things a warm start cannot copy, because the earlier generator had neither:

* the table of training heads' colour codes the seeds draw from (:attr:`Mask2Triplane.colour_codes`):
  the codes of the first rows of the training set, measured on each head's front view;
* the colour mapping code -> z: fitted by least squares (Adam on the mean squared error) to the appearance
  encoder's posterior means of the same heads, so that on the first step each head's colour code already
  gives z near the code the decoder learnt for it (distillation of the encoder into a narrower input);
  training then refines it end to end.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from backend.models.colour_code import colour_code
from backend.models.mask2triplane import Mask2Triplane
from training.prior_fit import front_view_batches


@torch.no_grad()
def training_colour_codes(model: Mask2Triplane, data, limit: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(codes (N, 18), posterior means (N, z_dim))`` float32 of the first ``limit`` heads of ``data`` (a
    :class:`training.datasets.SynHead`), on the CPU."""
    codes, means = [], []
    dev = next(model.parameters()).device
    for rgb, mask in front_view_batches(model, data, limit):
        codes.append(colour_code(rgb, mask))
        means.append(model.appearance_encoder(rgb.to(dev), mask.to(dev))[0].cpu())
    return torch.cat(codes), torch.cat(means)


def init_colour_code(model: Mask2Triplane, data, steps: int = 1500, lr: float = 3e-3, seed: int = 0) -> dict[str, Any]:
    """Fill ``model.colour_codes`` with the codes of the first training heads (repeated when the set is
    smaller than the table) and fit ``model.colour_mapping`` to their posterior means. Returns what to
    record in the card: the number of heads and the fit's R^2 (share of the means' variance explained).

    Raises:
        RuntimeError: the model has no colour code, or ``data`` is empty.
    """
    if model.colour_mapping is None:
        raise RuntimeError("init_colour_code needs a generator with config appearance_code 'colours'")
    table = model.colour_codes.shape[0]
    codes, means = training_colour_codes(model, data, table)
    if len(codes) == 0:
        raise RuntimeError("no training heads to measure colour codes on")
    rows = torch.arange(table) % len(codes)
    model.colour_codes.copy_(codes[rows].to(model.colour_codes.device))
    dev = next(model.colour_mapping.parameters()).device
    x, y = codes.to(dev), means.to(dev)
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.colour_mapping.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        loss = (model.colour_mapping(x) - y).pow(2).mean()
        loss.backward()
        opt.step()
    with torch.no_grad():
        resid = (model.colour_mapping(x) - y).pow(2).sum().item()
        total = (y - y.mean(0)).pow(2).sum().item()
    return {"heads": int(len(codes)), "table_rows": int(table), "fit_r2": round(1.0 - resid / max(total, 1e-12), 4),
            "z_spread": round(float(np.sqrt(total / y.numel())), 4)}


def mesh_albedo_code(mesh_ply: bytes, min_vertices: int = 5) -> np.ndarray:
    """Per-group mean sRGB albedo of a SynHead ground-truth mesh (``mesh.ply``: albedo vertex colours and
    class labels) in the code's layout: ``(18,)`` float32 in [0, 1], :data:`~backend.models.colour_code.
    ABSENT_COLOUR` for groups with fewer than ``min_vertices`` vertices."""
    from backend.export import read_ply
    from backend.labels import LABEL_IDS
    from backend.models.colour_code import ABSENT_COLOUR, CODE_GROUPS

    mesh = read_ply(mesh_ply)
    rgb, labels = mesh["rgb"].astype(np.float32) / 255.0, mesh["label"]
    out = []
    for names in CODE_GROUPS.values():
        sel = np.isin(labels, [LABEL_IDS[n] for n in names])
        out.append(rgb[sel].mean(0) if sel.sum() >= min_vertices else np.full(3, ABSENT_COLOUR, np.float32))
    return np.concatenate(out).astype(np.float32)


def write_colour_albedo(weights_dir, data_root, name: str | None, command: str, tolerance: float = 2e-3) -> dict[str, Any]:
    """Write ``inference.colour_albedo`` into the card of a colour-code generator: for each row of its code
    table, the albedo (:func:`mesh_albedo_code`) of the training head the row was measured on. The rows were
    filled by :func:`init_colour_code` from the first heads of ``data_root`` in order; each head's code is
    measured again and must equal its row, so a different data folder cannot be paired with the table.

    Raises:
        RuntimeError: not a colour-code generator, or the data's codes do not match the table.
    """
    from backend.models.loading import load_model
    from backend.weights import write_card
    from training.datasets import SynHead

    model, card = load_model("mask2triplane", weights_dir, "cpu", name)
    if model.colour_mapping is None:
        raise RuntimeError(f"{card['name']} has no colour code (config appearance_code is not 'colours')")
    table = model.colour_codes.shape[0]
    data = SynHead(data_root, "train", limit=table)
    codes, _ = training_colour_codes(model, data, table)
    rows = torch.arange(table) % len(codes)
    worst = float((codes[rows] - model.colour_codes.float()).abs().max())
    if worst > tolerance:
        raise RuntimeError(f"the colour codes of {data_root} differ from the table by up to {worst:.4f}: not the heads "
                           "the table was measured on")
    albedo = np.stack([mesh_albedo_code(data.samples[i].path("mesh").read_bytes()) for i in range(len(codes))])
    card.setdefault("inference", {})["colour_albedo"] = [[round(float(v), 4) for v in albedo[i]] for i in rows.tolist()]
    card["inference"]["colour_albedo_source"] = {"heads": int(len(codes)), "command": command}
    write_card(card, card["name"], weights_dir)
    return {"name": card["name"], "heads": int(len(codes)), "max_code_difference": round(worst, 5)}
