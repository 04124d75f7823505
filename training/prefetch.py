"""Host-side training batches built ahead of the optimiser by worker processes (``s3d-train ... --workers N``).

Both trainers build a batch on the CPU (reading PNG / NPZ files, stroke-level sketch augmentation, point and ray
sampling) and then run the network. On the 2-core build machine the network dominates; on a GPU the batch building
does: the sketch network's step takes milliseconds on an H100/H200 while eight augmented sketches take about
0.3-0.5 s on one core. Workers build the batches of the next steps while the current one trains.

A step's batch depends only on ``(seed, step, rank)`` (:func:`step_rng`), never on which process built it or on
how many workers there are, so ``--workers`` changes speed, not results, and a resumed run sees the batches it
would have seen.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, Callable

import numpy as np

HostBatch = dict[str, np.ndarray]
HostBuilder = Callable[[np.random.Generator], HostBatch]

_worker_builder: HostBuilder | None = None


def step_rng(seed: int, step: int, rank: int) -> np.random.Generator:
    """The random generator of one optimiser step on one rank (the only randomness a batch may use)."""
    return np.random.default_rng([seed, step, rank])


def _init_worker(builder: HostBuilder) -> None:
    global _worker_builder
    _worker_builder = builder
    import cv2
    import torch

    cv2.setNumThreads(1)  # one thread per worker: the workers are the parallelism
    torch.set_num_threads(1)


def _build_in_worker(seed: int, step: int, rank: int) -> HostBatch:
    assert _worker_builder is not None, "worker started without a batch builder"
    return _worker_builder(step_rng(seed, step, rank))


class PrefetchedBatches:
    """``step -> host batch`` (dict of numpy arrays), built ``depth`` steps ahead by ``workers`` processes.

    Args:
        builder: picklable ``rng -> dict[str, np.ndarray]``; it must draw all randomness from ``rng``.
        seed, rank: the run's seed and this process's DistributedDataParallel rank (0 alone).
        workers: worker processes; 0 builds each batch in the calling process when it is asked for.
        depth: steps built ahead (default ``2 * workers``).

    Steps are expected in increasing order; asking for any other step (a resume) drops the batches built ahead
    and starts again from it. Worker processes are started with ``spawn`` (safe after torch has started its own
    threads); an exception in a worker is raised again by the call that asks for that step.

    Raises:
        ValueError: ``workers`` < 0.
    """

    def __init__(self, builder: HostBuilder, seed: int, rank: int = 0, workers: int = 0, depth: int | None = None):
        if workers < 0:
            raise ValueError(f"workers must be >= 0 (0 = build batches in the training process), got {workers}")
        self.builder, self.seed, self.rank = builder, seed, rank
        self.depth = max(1, depth if depth is not None else 2 * workers)
        self._pending: dict[int, Future[HostBatch]] = {}
        self._pool = None
        if workers > 0:
            self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_init_worker, initargs=(builder,))

    def __call__(self, step: int) -> HostBatch:
        if self._pool is None:
            return self.builder(step_rng(self.seed, step, self.rank))
        if step not in self._pending:  # first call or a jump: what was built ahead is for other steps
            self._drop_pending()
        for s in range(step, step + self.depth):
            if s not in self._pending:
                self._pending[s] = self._pool.submit(_build_in_worker, self.seed, s, self.rank)
        return self._pending.pop(step).result()

    def _drop_pending(self) -> None:
        for fut in self._pending.values():
            fut.cancel()
        self._pending.clear()

    def close(self) -> None:
        """Stop the workers (batches still being built are abandoned)."""
        self._drop_pending()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> "PrefetchedBatches":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
