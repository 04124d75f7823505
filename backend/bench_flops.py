"""FLOP counts, compute floors and the naive baseline of ``s3d bench`` (backend/bench.py).

* the machine's float32 matrix-multiply rate (``torch.mm`` of two ``2048 x 2048`` matrices, GFLOP/s);
* convolutions and linear layers of the networks counted by forward hooks (:class:`ConvFlopCounter`), the
  decoder MLP analytically per queried point (:func:`decoder_flops_per_point`);
* the naive baseline of the published pix2pix3D / EG3D extraction code (:func:`naive_baseline`): the
  tri-plane generator re-run for every block of ``32^3`` points of the dense grid.
"""
from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

NAIVE_BLOCK = 32


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    """Measured float32 ``torch.mm`` rate in GFLOP/s (``2 n^3`` FLOPs per product; best of ``repeats``)."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)  # warm-up
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n ** 3 / best / 1e9


def decoder_flops_per_point(cfg: dict[str, Any]) -> int:
    """Analytic FLOPs of one decoder query: plane sampling (3 planes x C x 4 taps x mul+add) + the MLP."""
    c, h, k = cfg["plane_channels"], cfg["decoder_hidden"], cfg["num_classes"]
    fin = 3 * c + (3 if cfg.get("decoder_xyz", False) else 0)
    return 3 * c * 4 * 2 + 2 * (fin * h + h * h + h * (1 + 3 + k))


class ConvFlopCounter:
    """Forward hooks on Conv2d / ConvTranspose2d / Linear / ModulatedConv2d; FLOPs summed per current stage.

    Modules under ``skip`` (the decoder, counted analytically) are not hooked.
    """

    def __init__(self, modules: list[Any], skip: Any = None):
        import torch.nn as nn

        from backend.models.mask2triplane import ModulatedConv2d

        self.stage = ""
        self.flops: dict[str, float] = {}
        self.handles = []
        skipped = {id(m) for m in skip.modules()} if skip is not None else set()
        for root in modules:
            for m in root.modules():
                if id(m) in skipped:
                    continue
                if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)) or isinstance(m, ModulatedConv2d):
                    self.handles.append(m.register_forward_hook(self._hook))

    def _hook(self, m: Any, inputs: tuple, out: Any) -> None:
        import torch.nn as nn

        if isinstance(m, nn.Linear):
            f = 2.0 * out.numel() * m.in_features
        elif isinstance(m, nn.ConvTranspose2d):
            x = inputs[0]
            f = 2.0 * x.numel() * m.out_channels * m.kernel_size[0] * m.kernel_size[1] / m.groups
        else:  # Conv2d or ModulatedConv2d: weight (Cout, Cin/groups, k, k)
            w = m.weight
            f = 2.0 * out.numel() * w.shape[1] * w.shape[2] * w.shape[3]
        self.flops[self.stage] = self.flops.get(self.stage, 0.0) + f

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def naive_baseline(models: Any, mask512: np.ndarray, resolution: int, seed: int = 0, max_blocks: int = 4) -> dict:
    """Time the published extraction loop: generator re-run per ``32^3`` block of the dense grid.

    Times ``max_blocks`` blocks (each: mask encoder + synthesis, then the decoder on the block's points)
    and extrapolates to all ``ceil((res+1)^3 / 32^3)`` blocks.
    """
    import torch

    m2t, dev = models.mask2triplane, models.device
    n = resolution + 1
    total_points = n ** 3
    block = NAIVE_BLOCK ** 3
    n_blocks = math.ceil(total_points / block)
    lin = np.linspace(-1.0, 1.0, n, dtype=np.float32)
    g = np.stack(np.meshgrid(lin, lin, lin, indexing="ij"), -1).reshape(-1, 3)
    ids = torch.from_numpy(mask512.astype(np.int64))[None].to(dev)
    timed = min(max_blocks, n_blocks)
    t0 = time.perf_counter()
    with torch.inference_mode():
        z = m2t.sample_z(seed, 1, dev)
        for i in range(timed):
            planes = m2t.planes_from_mask(ids, z)
            xyz = torch.from_numpy(g[i * block:(i + 1) * block]).to(dev)[None]
            m2t.query(planes, xyz)["sigma"].cpu()
    per_block = (time.perf_counter() - t0) / timed
    return {"blocks": n_blocks, "blocks_timed": timed, "block_points": block, "seconds_per_block": per_block,
            "seconds_estimated": per_block * n_blocks, "points": total_points}
