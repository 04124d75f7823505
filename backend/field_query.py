"""Point queries of one job's tri-plane field: the ``planes`` stage's product, used by the density grid and
the vertex colours."""
from __future__ import annotations

from typing import Any

import numpy as np

from backend.labels import NUM_CLASSES

QUERY_CHUNK = 131_072  # points per decoder call on a GPU: bounded memory (about 60 MB at the lite width)
#: points per decoder call on the CPU: the hidden activations (16 k x 64 floats = 4 MB) stay in cache;
#: measured (s3d bench, docs/performance.md) 1.5-2x faster decoding than 131 072-point chunks on 2 cores
QUERY_CHUNK_CPU = 16_384


class FieldQuery:
    """Chunked, gradient-free queries of one job's tri-plane field (planes computed once).

    Call with ``(N, 3)`` float32 box coordinates; returns numpy arrays ``sigma (N,)``, ``rgb (N, 3)``
    and optionally ``semantic (N, K)`` (K = the model's ``num_classes``, 19 for humans, 6 for cats). With ``symmetric`` the field is made mirror-symmetric about
    x = 0 (``Mask2Triplane.query_symmetric``; twice the cost of a query).
    """

    def __init__(self, model: Any, planes: Any, device: str, chunk: int | None = None, symmetric: bool = False):
        if chunk is None:
            chunk = QUERY_CHUNK_CPU if str(device).startswith("cpu") else QUERY_CHUNK
        self.model, self.planes, self.device, self.chunk = model, planes, device, chunk
        self.query = model.query_symmetric if symmetric else model.query
        self.points = 0

    def __call__(self, xyz: np.ndarray, semantic: bool = False, rgb: bool = True) -> dict[str, np.ndarray]:
        import torch

        xyz = np.ascontiguousarray(xyz, dtype=np.float32)
        n = len(xyz)
        self.points += n
        sig = np.empty(n, np.float32)
        col = np.empty((n, 3), np.float32) if rgb else None
        sem = np.empty((n, getattr(self.model, "num_classes", NUM_CLASSES)), np.float32) if semantic else None
        with torch.inference_mode():
            for a in range(0, n, self.chunk):
                x = torch.from_numpy(xyz[a:a + self.chunk]).to(self.device)[None]
                out = self.query(self.planes, x)
                sig[a:a + len(x[0])] = out["sigma"][0, :, 0].float().cpu().numpy()
                if rgb:
                    col[a:a + len(x[0])] = out["rgb"][0].float().cpu().numpy()
                if semantic:
                    sem[a:a + len(x[0])] = out["semantic"][0].float().cpu().numpy()
        res = {"sigma": sig}
        if rgb:
            res["rgb"] = col
        if semantic:
            res["semantic"] = sem
        return res

    def density(self, xyz: np.ndarray) -> np.ndarray:
        """``(N, 3)`` -> ``(N,)`` float32 sigma."""
        return self(xyz, rgb=False)["sigma"]
