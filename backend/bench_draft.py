"""``s3d bench --draft``: the wall time of the add-on's live-preview draft job (backend/bench.py).

The job options :data:`DRAFT_OPTIONS` are the same as ``blender_addon/live_preview.py``'s (a test keeps them
equal); one warm-up and ``repeats`` timed runs of ``generate``, the wall time of each run around the whole call.
"""
from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

#: The live preview's draft job (blender_addon/live_preview.py DRAFT_OPTIONS): grid 64^3, 4 colour views
#: (the backend's minimum) rendered at 48 px, 32 px preview renders.
DRAFT_OPTIONS = {"resolution": 64, "views": 4, "color_resolution": 48, "view_resolution": 32, "draft": True}


def bench_draft(source: Any = None, repeats: int = 5, threads: int = 0, weights_dir: str | Path | None = None,
                device: str = "cpu", seed: int = 0) -> dict:
    """Wall time of the live preview's draft job: :data:`DRAFT_OPTIONS`, models loaded once, one warm-up run,
    then ``repeats`` timed ``generate`` calls (each timed around the whole call, files written).

    The CPU time of the process per run (``time.process_time``) is reported too: on a busy machine the wall
    time grows with the load, the CPU time much less (with one thread it is what the wall time would be
    on a quiet core).

    Returns:
        ``{"case": "draft", "options", "input", "device", "threads", "cpu_count", "load_average_before",
        "wall_s" (list), "median_s", "min_s", "max_s", "cpu_s" (list), "cpu_median_s", "stage_median_s",
        "vertices", "faces"}``.

    Raises:
        ValueError: repeats < 1. PipelineError: from loading or generating.
    """
    import torch

    from backend.bench import DEFAULT_INPUT
    from backend.pipeline import GenerateOptions, generate, load_models

    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, not {repeats}")
    if threads:
        torch.set_num_threads(threads)
    source = str(source or DEFAULT_INPUT)
    models = load_models(weights_dir, device)
    opts = GenerateOptions(seed=seed, **DRAFT_OPTIONS).validate()
    load_before = os.getloadavg()[0]
    walls, cpus, runs = [], [], []
    with tempfile.TemporaryDirectory(prefix="s3d-bench-draft-") as tmp:
        generate(source, Path(tmp) / "warm", opts, models=models)
        for i in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            runs.append(generate(source, Path(tmp) / f"draft{i}", opts, models=models))
            walls.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
    stages = [k for k in runs[0]["timings_s"] if k != "total"]
    return {"case": "draft", "options": dict(DRAFT_OPTIONS), "input": source, "device": models.device,
            "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "load_average_before": load_before,
            "wall_s": walls, "median_s": statistics.median(walls), "min_s": min(walls), "max_s": max(walls),
            "cpu_s": cpus, "cpu_median_s": statistics.median(cpus),
            "stage_median_s": {k: statistics.median(r["timings_s"][k] for r in runs) for k in stages},
            "vertices": runs[-1]["vertex_count"], "faces": runs[-1]["face_count"]}


def format_draft(rep: dict) -> str:
    """The draft case as text: the wall time first, then the stages."""
    o = rep["options"]
    lines = [f"draft job (live preview): wall median {rep['median_s']:.3f} s (min {rep['min_s']:.3f}, max "
             f"{rep['max_s']:.3f}) over {len(rep['wall_s'])} runs after a warm-up; CPU time median "
             f"{rep['cpu_median_s']:.3f} s",
             f"options resolution {o['resolution']}, {o['views']} colour views at {o['color_resolution']} px, previews "
             f"{o['view_resolution']} px; input {rep['input']}; device {rep['device']}; threads {rep['threads']} of "
             f"{rep['cpu_count']} cores; load average before {rep['load_average_before']:.2f}; "
             f"{rep['vertices']} vertices"]
    lines += [f"  {k:<16}{v:>8.3f}" for k, v in rep["stage_median_s"].items() if k != "load_models"]
    return "\n".join(lines)
