"""The plain batch: every input of a folder -> its own output folder, in worker processes on this machine.

``s3d batch IN OUT`` (backend/cli.py) and the Ray engine (backend/batch_ray.py) share the plan
(:func:`batch_plan`), the re-run rule (:func:`finished_result`) and the worker functions
(:func:`worker_init`, :func:`convert_one`: one broken file never stops the batch).
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from pathlib import Path

#: Input files a batch converts (by suffix, case-insensitive); hidden files and folders are skipped.
INPUT_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".json")


def batch_inputs(in_dir: Path) -> list[Path]:
    """The inputs of ``in_dir`` (recursively, sorted), by :data:`INPUT_SUFFIXES`."""
    return sorted(p for p in in_dir.rglob("*") if p.is_file() and p.suffix.lower() in INPUT_SUFFIXES
                  and not any(part.startswith(".") for part in p.relative_to(in_dir).parts))


def batch_plan(in_dir: Path, out_dir: Path) -> list[tuple[Path, Path]]:
    """Every input of ``in_dir`` and its output folder: ``out_dir/<relative path without suffix>``, or
    ``<stem>_<suffix>`` when inputs of one folder share a stem (``head.png`` and ``head.json`` would
    otherwise overwrite each other). Used by both batch engines."""
    inputs = batch_inputs(in_dir)
    stems: dict[Path, int] = {}
    for p in inputs:
        key = p.relative_to(in_dir).with_suffix("")
        stems[key] = stems.get(key, 0) + 1
    plan = []
    for p in inputs:
        rel = p.relative_to(in_dir).with_suffix("")
        if stems[rel] > 1:
            rel = rel.with_name(f"{rel.name}_{p.suffix.lstrip('.').lower()}")
        plan.append((p, out_dir / rel))
    return plan


def finished_result(src: Path, dest: Path, options_dict: dict) -> bool:
    """True when ``dest/result.json`` records this input (same sha256 of its bytes) converted with these
    options (``dataclasses.asdict(GenerateOptions)``): a batch re-run skips it. Never raises; an unreadable
    or foreign result.json counts as not finished."""
    from backend.pipeline import input_sha256

    try:
        rec = json.loads((dest / "result.json").read_text())
        want = {k: (list(v) if isinstance(v, tuple) else v) for k, v in options_dict.items()}
        got = rec.get("options") if isinstance(rec, dict) else None
        if isinstance(got, dict) and "subject" not in got:  # written before the subject option: a human job
            got = dict(got, subject="human")
        return (isinstance(rec, dict) and rec.get("sketch_sha256") is not None
                and rec.get("sketch_sha256") == input_sha256(src) and got == want)
    except (OSError, ValueError):
        return False


_WORKER: dict = {}


def worker_init(weights: str | None, device: str, threads: int, need_sketch: bool, subject: str = "human") -> None:
    """Load the ``subject``'s networks once per worker process (a failure is recorded for every job)."""
    import torch

    from backend.pipeline import PipelineError, load_models

    torch.set_num_threads(max(1, threads))
    try:
        _WORKER["models"] = load_models(weights, device, need_sketch=need_sketch, subject=subject)
    except PipelineError as e:
        _WORKER["error"] = {"code": e.code, "message": str(e)}


def convert_one(task: tuple[str, str, dict]) -> dict:
    from backend.pipeline import GenerateOptions, PipelineError, generate

    src, out, opts = task
    t0 = time.perf_counter()
    if "error" in _WORKER:
        return {"input": src, "ok": False, **_WORKER["error"]}
    try:
        opts = dict(opts, formats=tuple(opts["formats"]))
        r = generate(src, out, GenerateOptions(**opts), models=_WORKER["models"])
        return {"input": src, "ok": True, "out": out, "seconds": round(time.perf_counter() - t0, 3),
                "vertices": r["vertex_count"], "faces": r["face_count"]}
    except PipelineError as e:
        return {"input": src, "ok": False, "code": e.code, "message": str(e)}
    except Exception as e:  # one broken file never stops the batch
        return {"input": src, "ok": False, "code": "internal_error", "message": f"{type(e).__name__}: {e}"}


def run_local_batch(in_dir: Path, out_dir: Path, options, weights: str | None, device: str, workers: int | None,
                    threads: int | None, force: bool, quiet: bool) -> int:
    """Convert every input of ``in_dir`` not already finished (unless ``force``) with ``options`` (a validated
    ``GenerateOptions``) in ``workers`` spawned processes (default min(CPUs, 4); 1 on CUDA), write
    ``out_dir/summary.json`` atomically and print a line per failure. Returns the exit code: 0, or 1 when an
    input failed."""
    from backend.weights import atomic_write_text

    plan = batch_plan(in_dir, out_dir)
    inputs = [p for p, _ in plan]
    out_dir.mkdir(parents=True, exist_ok=True)
    todo, skipped = [], []
    for p, dest in plan:
        if not force and finished_result(p, dest, dataclasses.asdict(options)):
            skipped.append(str(p))
            continue
        todo.append((str(p), str(dest), dataclasses.asdict(options)))
    cpu = os.cpu_count() or 1
    workers = workers or max(1, min(cpu, 4))
    if device == "cuda":
        workers = 1
    workers = max(1, min(workers, len(todo) or 1))
    threads = threads or max(1, cpu // workers)
    results = _convert_all(todo, workers, threads, weights, device, not options.from_mask, quiet, options.subject)
    failed = [r for r in results if not r["ok"]]
    summary = {"in_dir": str(in_dir), "out_dir": str(out_dir), "options": dataclasses.asdict(options),
               "workers": workers, "threads_per_worker": threads, "total_inputs": len(inputs),
               "done": sorted((r for r in results if r["ok"]), key=lambda r: r["input"]),
               "failed": sorted(failed, key=lambda r: r["input"]), "skipped_existing": skipped}
    atomic_write_text(out_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    print(f"s3d batch: {len(results) - len(failed)} done, {len(failed)} failed, {len(skipped)} already done; "
          f"summary in {out_dir / 'summary.json'}")
    for r in failed:
        print(f"  failed {r['input']}: [{r['code']}] {r['message']}", file=sys.stderr)
    return 1 if failed else 0




def _convert_all(todo: list[tuple[str, str, dict]], workers: int, threads: int, weights: str | None, device: str,
                 need_sketch: bool, quiet: bool, subject: str = "human") -> list[dict]:
    """:func:`convert_one` over ``todo`` in this process (one worker) or a spawned pool, with a progress bar."""
    import multiprocessing as mp

    from tqdm import tqdm

    if not todo:
        return []
    if workers == 1:
        worker_init(weights, device, threads, need_sketch, subject)
        return list(tqdm(map(convert_one, todo), total=len(todo), desc="s3d batch", unit="file", disable=quiet))
    with mp.get_context("spawn").Pool(workers, initializer=worker_init,
                                      initargs=(weights, device, threads, need_sketch, subject)) as pool:
        return list(tqdm(pool.imap_unordered(convert_one, todo), total=len(todo), desc="s3d batch", unit="file",
                         disable=quiet))
