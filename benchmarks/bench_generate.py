"""Benchmark ``s3d generate``: a thin wrapper of ``s3d bench`` (backend/bench.py).

Usage::

    python benchmarks/bench_generate.py [INPUT] [--resolutions 128,192,256] [--repeats 3] [--threads 2]
        [--json OUT] [--weights DIR]

Per-stage median times after a warm-up, FLOPs and compute floors against the measured matmul rate,
the naive per-block baseline and the peak memory; see backend/bench.py.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backend.bench import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
