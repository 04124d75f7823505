"""``s3d batch --engine ray``: the batch spread over Ray actors, on an embedded local Ray or a cluster.

* One actor per worker (:class:`Converter`) loads the models once (``backend.pipeline.load_models``) and
  converts many items; the driver hands each free actor the next item (at most one in flight per actor,
  so a dead worker takes one item with it) and shows a progress bar.
* Results are written by the actor itself, atomically, straight into ``OUT_DIR`` through
  ``backend.pipeline.generate`` (``backend/job_output.py``): on a cluster ``IN_DIR`` and ``OUT_DIR`` must be
  on a file system every node sees (docs/scale-out.md says why).
* Faults: an actor whose process dies is restarted by Ray (``max_restarts``); its item goes back to the
  front of the queue and is retried on the next free worker, at most ``max_retries`` times (then it fails
  with ``worker_lost``). The killed job's temporary folder is removed by the retry (never committed), so
  no half-written result folder appears.
* Re-runs skip finished items (:func:`backend.batch.finished_result`: input sha256 and options in
  ``result.json``), so an interrupted batch resumes.
* ``OUT_DIR/summary.json``: the plain batch's keys plus ``engine``, ``per_worker``, ``retries`` /
  ``retried``, ``converted`` / ``skipped`` counts, the Ray settings, ``wall_s`` (all of it, Ray start
  included) and ``items_per_s`` over ``convert_s`` (from the first item handed out, models loaded).

Ray is optional (``pip install -e '.[cluster]'``) and imported only when asked for. Attaching to Ray is
backend/batch_ray_session.py; the actors and the driver loop are backend/batch_ray_driver.py.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from backend.batch_ray_driver import MAX_UNAVAILABLE_PINGS, Converter, Driver
from backend.batch_ray_session import (
    INSTALL_HINT,
    BatchError,
    RaySession,
    import_ray,
    start_ray,
    stop_ray,
)

#: Re-exported for the code and tests that import them from here.
__all__ = ["INSTALL_HINT", "MAX_UNAVAILABLE_PINGS", "BatchError", "Converter", "RaySession", "import_ray",
           "run_batch", "run_from_args", "start_ray", "stop_ray"]


def _default_workers(ray, local: bool, threads: int, gpus: float) -> int:
    cpu = os.cpu_count() or 1
    if local:
        return max(1, min(cpu, 4))
    res = ray.cluster_resources()
    if gpus > 0:
        return max(1, int(res.get("GPU", 0) / gpus))
    return max(1, int(res.get("CPU", 1) / threads))


def run_batch(plan: list[tuple[Path, Path]], out_dir: Path, options: Any, *, in_dir: Path | None = None,
              weights: str | None = None, device: str = "auto", workers: int = 0, threads: int = 0,
              num_gpus_per_worker: float = 0.0, max_retries: int = 3, force: bool = False,
              address: str | None = None, runtime_env: dict | None = None, quiet: bool = False) -> dict:
    """Convert every ``(input, output folder)`` of ``plan`` on Ray actors; write ``out_dir/summary.json``.

    Args:
        plan: from :func:`backend.batch.batch_plan`; options: a validated ``GenerateOptions``.
        workers: actors (0: CPU cores up to 4 locally; cluster GPUs / ``num_gpus_per_worker``, else
            cluster CPUs / ``threads``); threads: torch threads per actor, also the CPUs it reserves
            (0: cores / workers locally, 1 on a cluster); num_gpus_per_worker: GPUs each actor reserves
            (fractions share a GPU); max_retries: retries of an item whose worker died.
        address: a cluster to join (else ``$RAY_ADDRESS``, else an embedded local Ray); runtime_env: Ray's
            job runtime environment (env vars, ``worker_process_setup_hook``) for a Ray started here.

    Returns:
        The summary (also written to ``summary.json``).

    Raises:
        BatchError: ``ray_not_installed``, ``ray_unreachable``, ``bad_option`` (negative counts, or
            ``--device cuda`` without GPUs per worker).
    """
    from tqdm import tqdm

    from backend.weights import atomic_write_text

    _check_options(device, workers, threads, num_gpus_per_worker, max_retries)
    ray = import_ray()
    opts = dataclasses.asdict(options)
    out_dir.mkdir(parents=True, exist_ok=True)
    todo, skipped = _split_plan(plan, opts, force)
    local = not (address or os.environ.get("RAY_ADDRESS")) and not ray.is_initialized()
    cpu = os.cpu_count() or 1
    n_workers = workers or (max(1, min(cpu, 4)) if local else 0)
    threads = threads or (max(1, cpu // max(1, n_workers)) if local else 1)
    results, retried, per_worker, convert_s = [], [], [], 0.0
    session = RaySession(False, None, "none")
    t0 = time.perf_counter()
    if todo:
        session = start_ray(address, num_cpus=max(1, n_workers) * threads, runtime_env=runtime_env)
        try:
            if not n_workers:
                n_workers = _default_workers(ray, False, threads, num_gpus_per_worker)
            n_workers = max(1, min(n_workers, len(todo)))
            results, retried, per_worker, convert_s = Driver(
                ray, todo, opts, n_workers, threads, num_gpus_per_worker, max_retries, weights, device,
                not options.from_mask, quiet, tqdm).run()
        finally:
            stop_ray(session)
    else:
        n_workers = 0  # nothing to convert: Ray is not started
    summary = _summary(plan, out_dir, in_dir, opts, n_workers, threads, results, retried, per_worker, skipped,
                       time.perf_counter() - t0, convert_s, session, num_gpus_per_worker, max_retries)
    atomic_write_text(out_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


def _summary(plan, out_dir, in_dir, opts, n_workers, threads, results, retried, per_worker, skipped, wall,
             convert_s, session, num_gpus_per_worker, max_retries) -> dict:
    """The ``summary.json`` record (the module doc lists its keys)."""
    failed = [r for r in results if not r["ok"]]
    done = [r for r in results if r["ok"]]
    return {"in_dir": str(in_dir) if in_dir is not None else None, "out_dir": str(out_dir), "options": opts,
            "engine": "ray", "workers": n_workers, "threads_per_worker": threads, "total_inputs": len(plan),
            "done": sorted(done, key=lambda r: r["input"]), "failed": sorted(failed, key=lambda r: r["input"]),
            "skipped_existing": skipped, "converted": len(done), "skipped": len(skipped),
            "retries": len(retried), "retried": retried, "per_worker": per_worker,
            "wall_s": round(wall, 3), "convert_s": round(convert_s, 3),
            "items_per_s": round(len(results) / convert_s, 4) if results and convert_s > 0 else None,
            "ray": {"address": session.address, "num_gpus_per_worker": num_gpus_per_worker,
                    "max_retries": max_retries}}


def _check_options(device: str, workers: int, threads: int, num_gpus_per_worker: float, max_retries: int) -> None:
    """Raises BatchError ``bad_option`` for negative counts, or ``--device cuda`` without GPUs per worker."""
    if num_gpus_per_worker < 0 or max_retries < 0 or workers < 0 or threads < 0:
        raise BatchError("bad_option", "--workers, --threads, --num-gpus-per-worker and --max-retries must not be "
                         "negative")
    if device == "cuda" and not num_gpus_per_worker:
        raise BatchError("bad_option", "--device cuda with --engine ray needs --num-gpus-per-worker (for example "
                         "1, or 0.25 for four workers a GPU): Ray hides the GPUs from workers that reserve none")


def _split_plan(plan: list[tuple[Path, Path]], opts: dict, force: bool) -> tuple[list[tuple[str, str]], list[str]]:
    """``plan`` -> (items to convert, inputs already converted with these options); ``force`` redoes all."""
    from backend.batch import finished_result

    todo, skipped = [], []
    for src, dest in plan:
        if not force and finished_result(src, dest, opts):
            skipped.append(str(src))
        else:
            todo.append((str(src), str(dest)))
    return todo, skipped


def run_from_args(args, options) -> int:
    """``s3d batch --engine ray``: run :func:`run_batch` from the parsed CLI arguments; print the outcome.

    Returns:
        0 all converted (or skipped), 1 some failed, 2 Ray missing / unreachable / bad options.
    """
    from backend.batch import batch_plan

    in_dir, out_dir = Path(args.in_dir), Path(args.out_dir)
    try:
        summary = run_batch(batch_plan(in_dir, out_dir), out_dir, options, in_dir=in_dir, weights=args.weights,
                            device=args.device, workers=args.workers, threads=args.threads,
                            num_gpus_per_worker=args.num_gpus_per_worker, max_retries=args.max_retries,
                            force=args.force, address=args.address, quiet=args.quiet)
    except BatchError as e:
        print(f"s3d batch: error [{e.code}]: {e}", file=sys.stderr)
        return 2
    failed = summary["failed"]
    rate = f", {summary['items_per_s']:.2f} files/s" if summary["items_per_s"] else ""
    print(f"s3d batch (ray, {summary['workers']} workers): {summary['converted']} done, {len(failed)} failed, "
          f"{summary['skipped']} already done, {summary['retries']} retried{rate}; "
          f"summary in {out_dir / 'summary.json'}")
    for r in failed:
        print(f"  failed {r['input']}: [{r['code']}] {r['message']}", file=sys.stderr)
    return 1 if failed else 0
