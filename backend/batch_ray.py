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
* Re-runs skip finished items (:func:`backend.cli.finished_result`: input sha256 and options in
  ``result.json``), so an interrupted batch resumes.
* ``OUT_DIR/summary.json``: the plain batch's keys plus ``engine``, ``per_worker``, ``retries`` /
  ``retried``, ``converted`` / ``skipped`` counts, the Ray settings, ``wall_s`` (all of it, Ray start
  included) and ``items_per_s`` over ``convert_s`` (from the first item handed out, models loaded).

Ray is optional (``pip install -e '.[cluster]'``) and imported only here, only when asked for.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.errors import CodedError

INSTALL_HINT = "pip install -e '.[cluster]'"
#: readiness checks (0.1 s apart) an actor may answer "unavailable" while Ray restarts it
MAX_UNAVAILABLE_PINGS = 600


class BatchError(CodedError, RuntimeError):
    """The Ray batch cannot start: ``ray_not_installed``, ``ray_unreachable``, ``bad_option``."""


def import_ray():
    """Import Ray.

    Raises:
        BatchError: ``ray_not_installed`` with the install command.
    """
    try:
        import ray
    except ImportError:
        raise BatchError("ray_not_installed", f"--engine ray needs Ray, which is not installed here; install the "
                         f"cluster extra ({INSTALL_HINT}) or use the default --engine local") from None
    return ray


@dataclass
class RaySession:
    """How this process is attached to Ray: ``started`` (ours to shut down), the embedded Ray's temp
    folder (removed on stop), and the address (``"embedded"``, a cluster address, or ``"existing"``)."""

    started: bool
    temp_dir: str | None
    address: str


def start_ray(address: str | None = None, num_cpus: int = 2, runtime_env: dict | None = None) -> RaySession:
    """Attach to Ray: reuse one already initialised in this process, join ``address`` (or
    ``$RAY_ADDRESS``; ``"auto"`` = the cluster started on this machine by ``ray start``), else start an
    embedded local Ray with ``num_cpus`` CPUs, no dashboard, its logs and sockets in a new temp folder.

    Raises:
        BatchError: ``ray_not_installed``; ``ray_unreachable`` (no cluster at that address).
    """
    ray = import_ray()
    if ray.is_initialized():
        return RaySession(False, None, "existing")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage report from a batch job
    quiet = dict(log_to_driver=False, logging_level="ERROR", runtime_env=runtime_env)
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        try:
            ray.init(address=address, **quiet)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise BatchError("ray_unreachable", f"cannot join the Ray cluster at {address!r} ({e}); start one "
                             "with `ray start --head` or leave out --address for a local Ray") from None
        return RaySession(True, None, address)
    # short: Ray's unix socket paths (at most 107 bytes) live under it, and $TMPDIR can be long (macOS)
    tmp = tempfile.mkdtemp(prefix="s3d-ray-", dir="/tmp" if os.access("/tmp", os.W_OK) else None)
    env_address = os.environ.pop("RAY_ADDRESS", None)
    try:
        ray.init(num_cpus=num_cpus, include_dashboard=False, _temp_dir=tmp, **quiet)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if env_address is not None:
            os.environ["RAY_ADDRESS"] = env_address
    return RaySession(True, tmp, "embedded")


def stop_ray(session: RaySession) -> None:
    """Shut Ray down if :func:`start_ray` started or joined it, and remove the embedded Ray's temp folder."""
    if not session.started:
        return
    import ray

    ray.shutdown()
    if session.temp_dir:
        shutil.rmtree(session.temp_dir, ignore_errors=True)


class Converter:
    """A Ray actor body: loads the models once, then converts items one call at a time.

    Uses the plain batch's worker functions (``backend.cli._batch_init`` / ``_batch_one``), so both
    engines convert an item identically and report failures with the same codes.
    """

    def __init__(self, index: int, weights: str | None, device: str, threads: int, need_sketch: bool):
        from backend.cli import _batch_init

        self.index = index
        _batch_init(weights, device, threads, need_sketch)

    def ready(self) -> dict:
        """``{"pid", "node"}``: answers once the actor (re)started and loaded its models."""
        import ray

        return {"pid": os.getpid(), "node": ray.util.get_node_ip_address()}

    def convert(self, src: str, dest: str, options: dict) -> dict:
        """One item -> ``dest`` (atomic); the plain batch's result dict plus ``worker`` and ``pid``."""
        from backend.cli import _batch_one

        r = _batch_one((src, dest, options))
        return dict(r, worker=self.index, pid=os.getpid())


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
        plan: from :func:`backend.cli.batch_plan`; options: a validated ``GenerateOptions``.
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

    from backend.cli import finished_result
    from backend.weights import atomic_write_text

    if num_gpus_per_worker < 0 or max_retries < 0 or workers < 0 or threads < 0:
        raise BatchError("bad_option", "--workers, --threads, --num-gpus-per-worker and --max-retries must not be "
                         "negative")
    if device == "cuda" and not num_gpus_per_worker:
        raise BatchError("bad_option", "--device cuda with --engine ray needs --num-gpus-per-worker (for example "
                         "1, or 0.25 for four workers a GPU): Ray hides the GPUs from workers that reserve none")
    ray = import_ray()
    opts = dataclasses.asdict(options)
    out_dir.mkdir(parents=True, exist_ok=True)
    todo, skipped = [], []
    for src, dest in plan:
        if not force and finished_result(src, dest, opts):
            skipped.append(str(src))
        else:
            todo.append((str(src), str(dest)))
    local = not (address or os.environ.get("RAY_ADDRESS")) and not ray.is_initialized()
    cpu = os.cpu_count() or 1
    n_workers = workers or (max(1, min(cpu, 4)) if local else 0)
    threads = threads or (max(1, cpu // max(1, n_workers)) if local else 1)
    results: list[dict] = []
    retried: list[dict] = []
    per_worker: list[dict] = []
    convert_s = 0.0
    session = RaySession(False, None, "none")
    t0 = time.perf_counter()
    if todo:
        session = start_ray(address, num_cpus=max(1, n_workers) * threads, runtime_env=runtime_env)
        try:
            if not n_workers:
                n_workers = _default_workers(ray, False, threads, num_gpus_per_worker)
            n_workers = max(1, min(n_workers, len(todo)))
            results, retried, per_worker, convert_s = _drive(
                ray, todo, opts, n_workers, threads, num_gpus_per_worker, max_retries, weights, device,
                not options.from_mask, quiet, tqdm)
        finally:
            stop_ray(session)
    else:
        n_workers = 0  # nothing to convert: Ray is not started
    wall = time.perf_counter() - t0
    failed = [r for r in results if not r["ok"]]
    done = [r for r in results if r["ok"]]
    summary = {"in_dir": str(in_dir) if in_dir is not None else None, "out_dir": str(out_dir), "options": opts,
               "engine": "ray", "workers": n_workers, "threads_per_worker": threads, "total_inputs": len(plan),
               "done": sorted(done, key=lambda r: r["input"]), "failed": sorted(failed, key=lambda r: r["input"]),
               "skipped_existing": skipped, "converted": len(done), "skipped": len(skipped),
               "retries": len(retried), "retried": retried, "per_worker": per_worker,
               "wall_s": round(wall, 3), "convert_s": round(convert_s, 3),
               "items_per_s": round(len(results) / convert_s, 4) if results and convert_s > 0 else None,
               "ray": {"address": session.address, "num_gpus_per_worker": num_gpus_per_worker,
                       "max_retries": max_retries}}
    atomic_write_text(out_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


def _drive(ray, todo, opts, n_workers, threads, gpus, max_retries, weights, device, need_sketch, quiet, tqdm):
    """The driver loop: one item in flight per actor; dead actors' items requeued (see the module doc)."""
    from backend.cli import finished_result

    # Ray restarts a dead actor (max_restarts) but does not replay its call (max_task_retries=0): the
    # driver requeues the item itself, so it can count the retry and cap it per item.
    cls = ray.remote(Converter).options(num_cpus=threads, num_gpus=gpus, max_restarts=max_retries + 1,
                                        max_task_retries=0)
    actors = [cls.remote(i, weights, device, threads, need_sketch) for i in range(n_workers)]
    stats = [{"worker": i, "done": 0, "failed": 0, "lost": 0, "pids": [], "node": None} for i in range(n_workers)]
    queue = deque(todo)
    attempts: dict[str, int] = {}
    results: list[dict] = []
    retried: list[dict] = []
    inflight: dict[Any, tuple[int, tuple[str, str]]] = {}
    pinging = {actors[i].ready.remote(): i for i in range(n_workers)}  # free once loaded
    free: list[int] = []
    unavailable = [0] * n_workers
    bar = tqdm(total=len(todo), desc="s3d batch (ray)", unit="file", disable=quiet, file=sys.stderr)

    def postfix(refresh: bool) -> None:
        bar.set_postfix(done=sum(x["ok"] for x in results), failed=sum(not x["ok"] for x in results),
                        retried=len(retried), refresh=refresh)

    def finish(r: dict) -> None:
        results.append(r)
        postfix(False)
        bar.update(1)

    first_start = None
    try:
        while queue or inflight or pinging:
            if free and queue and first_start is None:
                first_start = time.perf_counter()  # workers loaded: the steady-state clock starts
                bar.reset(total=len(todo))  # items per second without Ray's start-up
            while free and queue:
                i = free.pop(0)
                src, dest = queue.popleft()
                if attempts.get(src) and finished_result(Path(src), Path(dest), opts):
                    # the lost worker had committed it before dying: done, not converted twice
                    finish({"input": src, "ok": True, "out": dest, "recovered": True, "worker": i})
                    free.append(i)
                    continue
                inflight[actors[i].convert.remote(src, dest, opts)] = (i, (src, dest))
            if not inflight and not pinging:
                break  # every actor is gone for good
            ready, _ = ray.wait(list(inflight) + list(pinging), num_returns=1)
            ref = ready[0]
            if ref in pinging:
                i = pinging.pop(ref)
                try:
                    info = ray.get(ref)
                except ray.exceptions.ActorDiedError as e:
                    # restarts used up, or it cannot start (e.g. the project is not installed on that node)
                    stats[i]["error"] = str(e).strip().splitlines()[-1][:300] if str(e).strip() else type(e).__name__
                    continue
                except ray.exceptions.RayError:  # unavailable while Ray restarts it: ask again shortly
                    unavailable[i] += 1
                    if unavailable[i] <= MAX_UNAVAILABLE_PINGS:
                        time.sleep(0.1)
                        pinging[actors[i].ready.remote()] = i
                    continue
                unavailable[i] = 0
                stats[i]["node"] = info["node"]
                if info["pid"] not in stats[i]["pids"]:
                    stats[i]["pids"].append(info["pid"])
                free.append(i)
                continue
            i, (src, dest) = inflight.pop(ref)
            try:
                r = ray.get(ref)
            except ray.exceptions.RayTaskError as e:  # raised inside convert, past _batch_one's handler
                r = {"input": src, "ok": False, "code": "internal_error", "message": str(e).splitlines()[0][:300],
                     "worker": i}
            except ray.exceptions.RayError as e:  # the worker process died (or its node did)
                stats[i]["lost"] += 1
                attempts[src] = attempts.get(src, 0) + 1
                retried.append({"input": src, "worker": i, "attempt": attempts[src], "error": type(e).__name__})
                if attempts[src] > max_retries:
                    finish({"input": src, "ok": False, "code": "worker_lost",
                            "message": f"the worker converting it died {attempts[src]} times ({type(e).__name__}); "
                                       "see the Ray logs of the node, often the OOM killer", "worker": i})
                else:
                    queue.appendleft((src, dest))
                    postfix(True)
                pinging[actors[i].ready.remote()] = i  # back in the pool once restarted
                continue
            stats[i]["done" if r["ok"] else "failed"] += 1
            finish(r)
            free.append(i)
        why = "; ".join(sorted({w["error"] for w in stats if w.get("error")}))
        for src, dest in queue:  # only when no actor is left
            finish({"input": src, "ok": False, "code": "worker_lost",
                    "message": "no Ray worker left to convert it (every worker died more often than --max-retries, "
                               f"or could not start){': ' + why if why else ''}"})
    finally:
        bar.close()
        for a in actors:
            ray.kill(a, no_restart=True)
    convert_s = time.perf_counter() - first_start if first_start is not None else 0.0
    return results, retried, stats, convert_s


def run_from_args(args, options) -> int:
    """``s3d batch --engine ray``: run :func:`run_batch` from the parsed CLI arguments; print the outcome.

    Returns:
        0 all converted (or skipped), 1 some failed, 2 Ray missing / unreachable / bad options.
    """
    from backend.cli import batch_plan

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
