"""Fit the generator's appearance prior: a Gaussian over the codes its encoder gives the training heads.

The cVAE's KL term pulls every posterior q(z | rgb, mask) towards N(0, I), but with the small KL weight
the recipe needs (the code must carry colour) the codes the decoder learnt do not fill N(0, I): a seed's
z ~ N(0, I) lands between them and decodes to near-average colours (measured in docs/models.md, "Seeds
that matter"). Ex-post density estimation (Ghosh et al., "From variational to deterministic
autoencoders", ICLR 2020, section 4) fits a density to the codes of the training set after training and
samples from it instead. Here the density is one Gaussian with a full covariance (the codes of 1,000+
heads over 64 dimensions estimate it well; shrinkage towards the diagonal keeps it positive definite).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from backend.models.mask2triplane import Mask2Triplane


def front_view_batches(model: Mask2Triplane, data, limit: int | None = None, batch: int = 16):
    """Yield ``(rgb (b, 3, Ra, Ra) float32 sRGB in [0, 1], mask (b, 19, Rm, Rm) class fractions)`` of the
    first ``limit`` heads of a :class:`training.datasets.SynHead` in order, at the model's appearance and
    mask resolutions (the appearance encoder's input)."""
    from training.datasets import _resize_rgb, onehot_area, read_ids, read_rgb

    res = model.cfg["appearance_resolution"]
    n = len(data) if limit is None else min(limit, len(data))
    for start in range(0, n, batch):
        rgbs, masks = [], []
        for i in range(start, min(n, start + batch)):
            s = data.samples[i]
            rgbs.append(np.transpose(_resize_rgb(read_rgb(s.path("rgb")), res), (2, 0, 1)))
            masks.append(onehot_area(read_ids(s.path("mask")), model.cfg["mask_resolution"]))
        yield torch.from_numpy(np.stack(rgbs)), torch.from_numpy(np.stack(masks))


@torch.no_grad()
def posterior_means(model: Mask2Triplane, data, limit: int | None = None, batch: int = 16) -> np.ndarray:
    """Posterior means ``(N, z_dim)`` float64 of the appearance encoder over the first ``limit`` heads of
    a :class:`training.datasets.SynHead` (front RGB + mask of each head)."""
    dev = next(model.parameters()).device
    return np.concatenate([model.appearance_encoder(rgb.to(dev), mask.to(dev))[0].double().cpu().numpy()
                           for rgb, mask in front_view_batches(model, data, limit, batch)])


def fit_gaussian(codes: np.ndarray, shrinkage: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(D,)`` and lower-triangular Cholesky factor ``(D, D)`` (float64) of ``codes (N, D)``.

    The covariance is shrunk towards its diagonal, ``(1 - shrinkage) C + shrinkage diag(C)`` (Ledoit-Wolf
    style regularisation), so it stays positive definite when N is not much larger than D.

    Raises:
        ValueError: fewer than 2 codes, or ``shrinkage`` outside [0, 1].
    """
    codes = np.asarray(codes, np.float64)
    if codes.ndim != 2 or codes.shape[0] < 2:
        raise ValueError(f"need codes (N >= 2, D), got shape {codes.shape}")
    if not 0.0 <= shrinkage <= 1.0:
        raise ValueError(f"shrinkage must be in [0, 1], got {shrinkage}")
    mean = codes.mean(0)
    cov = np.cov(codes, rowvar=False)
    cov = (1.0 - shrinkage) * cov + shrinkage * np.diag(np.diag(cov)) + 1e-8 * np.eye(cov.shape[0])
    return mean, np.linalg.cholesky(cov)


def fit_prior(weights_dir: str | Path, data_root: str | Path, limit: int | None, name: str | None,
              command: str, shrinkage: float = 0.05) -> dict[str, Any]:
    """Fit the prior on the first ``limit`` training heads of ``data_root`` and write it into the card
    ``<weights_dir>/<name>.json`` as ``inference.z_prior`` (with how it was made). Returns a summary.

    Raises:
        WeightsError, DataError: unreadable weights or data.
    """
    from backend.models.loading import load_model
    from backend.weights import write_card
    from training.datasets import SynHead

    model, card = load_model("mask2triplane", weights_dir, "cpu", name)
    model.set_z_prior(None)
    data = SynHead(data_root, "train", limit=limit)
    codes = posterior_means(model, data)
    mean, tril = fit_gaussian(codes, shrinkage)
    card.setdefault("inference", {})["z_prior"] = {
        "mean": [round(float(v), 6) for v in mean],
        # row i of the lower-triangular factor holds its i + 1 entries up to the diagonal
        "scale_tril": [[round(float(v), 6) for v in row[:i + 1]] for i, row in enumerate(tril)],
        "heads": int(codes.shape[0]), "seed_min": int(min(s.seed for s in data.samples)),
        "seed_max": int(max(s.seed for s in data.samples)), "shrinkage": shrinkage, "command": command}
    write_card(card, card["name"], weights_dir)
    return {"name": card["name"], "heads": int(codes.shape[0]), "code_std_mean": round(float(codes.std(0).mean()), 4),
            "code_mean_norm": round(float(np.linalg.norm(mean)), 4)}
