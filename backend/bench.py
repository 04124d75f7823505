"""``s3d bench``: per-stage wall time of ``generate``, FLOP counts, compute floors and the naive baseline.

What one bench run measures, in one process (models loaded once, as ``s3d serve`` and ``s3d batch`` do):

* per-stage wall time of :func:`backend.pipeline.generate` (the stage timings of its result.json),
  median of ``repeats`` runs after one warm-up run, at each grid resolution asked for;
* the machine's float32 matrix-multiply rate (``torch.mm`` of two ``2048 x 2048`` matrices, GFLOP/s);
* a FLOP count per network stage: convolutions and linear layers of the sketch U-Net and of the
  mask encoder + tri-plane synthesis by forward hooks (``2 * C_in * C_out * k^2`` per output pixel,
  ``2 * in * out`` per linear row), attributed to the stage running when the hook fires; the decoder
  MLP analytically per queried point (``2 * (in*h + h*h + h*out)`` + bilinear plane sampling
  ``3 planes * C * 4 taps * 2``) times the points the pipeline queried in that stage; each stage's time
  as a multiple of its compute floor (``flops / matmul rate``);
* the naive baseline of the published pix2pix3D / EG3D extraction code: the tri-plane generator
  (mask encoder + synthesis) re-run for every block of ``32^3`` points of the dense ``(res+1)^3`` grid,
  then the decoder on the block. A few blocks are timed and the time is extrapolated to all blocks
  (stated in the output); the speed ratio is against this pipeline's ``planes`` + ``density_grid``.
* threads used and the peak resident memory of the process (``ru_maxrss``);
* the Blender import of the mesh the bench just generated (per resolution, the last timed job folder):
  when ``bpy`` is importable by this Python (checked with ``importlib.util.find_spec``; bpy is never
  imported into this process, which also holds torch), ``scripts/bench_addon_import.py --job-dir``
  runs in a subprocess and imports the folder with the add-on's ``import_job_folder`` into an empty
  scene ``blender_repeats`` times (median reported). It is a separate row, not part of the job total;
  without bpy the row says "bpy not installed".

``s3d bench --draft`` measures only the draft job of the add-on's live preview instead: the job options
:data:`DRAFT_OPTIONS` (the same as ``blender_addon/live_preview.py``; a test keeps them equal), one
warm-up and ``repeats`` timed runs of ``generate``, the wall time of each run around the whole call.

The FLOP counting and the naive baseline live in backend/bench_flops.py, the Blender-import row in
backend/bench_blender.py, the draft case in backend/bench_draft.py; this module runs the bench and prints it.

Stage FLOPs not counted (numpy / OpenCV work: intake, mesh, export; the z-buffer part of vertex_colors)
are reported as ``null``.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from backend.bench_blender import blender_import_time, format_blender_row
# DRAFT_OPTIONS: tests/test_live_preview.py compares the add-on's draft options with it here
from backend.bench_draft import DRAFT_OPTIONS, bench_draft, format_draft  # noqa: F401
from backend.bench_flops import NAIVE_BLOCK, ConvFlopCounter, decoder_flops_per_point, matmul_gflops, naive_baseline

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_INPUT = ROOT / "examples" / "head_front.json"


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def bench_resolution(source: Any, models: Any, resolution: int, repeats: int, views: int, workdir: Path,
                     rate_gflops: float, naive_blocks: int = 4, blender: bool = True,
                     blender_repeats: int = 3) -> dict:
    """Bench one grid resolution: warm-up + ``repeats`` timed generate runs, FLOPs, naive baseline.

    ``blender``: also time the Blender import of the last timed job's folder (:func:`blender_import_time`);
    a failure is recorded as ``{"error": message}`` instead of stopping the bench.
    """
    from backend.pipeline import GenerateOptions, generate

    opts = GenerateOptions(resolution=resolution, views=views)
    generate(source, workdir / f"warm{resolution}", opts, models=models)  # warm-up
    runs = []
    for i in range(repeats):
        runs.append(generate(source, workdir / f"r{resolution}_{i}", opts, models=models))
    stages = [k for k in runs[0]["timings_s"] if k != "total"]
    med = {k: statistics.median(r["timings_s"][k] for r in runs) for k in stages}
    med["total"] = statistics.median(r["timings_s"]["total"] for r in runs)
    row = _stage_flops(source, models, opts, workdir / f"flops{resolution}", stages, rate_gflops)
    floor = row["compute_floor_s"]
    row["time_over_floor"] = {k: (None if floor[k] in (None, 0.0) else med[k] / floor[k]) for k in stages}
    naive = naive_baseline(models, _mask512(workdir / f"flops{resolution}" / "mask.png"), resolution,
                           max_blocks=naive_blocks)
    ours = med["planes"] + med["density_grid"]
    naive["ours_planes_plus_density_grid_s"] = ours
    naive["speed_ratio"] = naive["seconds_estimated"] / ours if ours > 0 else None
    if not blender:
        blend: dict[str, Any] = {"skipped": "--no-blender"}
    else:
        try:
            blend = blender_import_time(workdir / f"r{resolution}_{repeats - 1}", blender_repeats)
        except RuntimeError as e:
            blend = {"error": str(e)}
    res = row.pop("result")
    return {"resolution": resolution, "repeats": repeats, "median_s": med, "flops": row["flops"],
            "compute_floor_s": row["compute_floor_s"], "time_over_floor": row["time_over_floor"],
            "decoder_flops_per_point": row["decoder_flops_per_point"],
            "grid_points_evaluated": row["grid_points_evaluated"],
            "grid_points_dense": int(res["mesh"]["grid_points_dense"]),
            "color_points_queried": row["color_points_queried"],
            "vertices": res["vertex_count"], "faces": res["face_count"], "naive_baseline": naive,
            "blender_import": blend}


def _stage_flops(source: Any, models: Any, opts: Any, job_dir: Path, stages: list[str], rate_gflops: float) -> dict:
    """FLOPs per stage in one more (untimed) generate run with counting hooks, and each stage's compute floor
    (``flops / matmul rate``): ``{"result" (the run's result), "flops", "compute_floor_s",
    "decoder_flops_per_point", "grid_points_evaluated", "color_points_queried"}``."""
    from backend.pipeline import generate

    m2t = models.mask2triplane
    nets = [m2t] + ([models.sketch2mask] if models.sketch2mask is not None else [])
    counter = ConvFlopCounter(nets, skip=m2t.decoder)
    try:
        def progress(stage: str, _f: float) -> None:
            counter.stage = stage
        res = generate(source, job_dir, opts, models=models, progress=progress)
    finally:
        counter.remove()
    # a mirror-averaged generator (card inference.mirror_average) decodes every queried point twice
    per_point = decoder_flops_per_point(m2t.cfg) * (2 if m2t.mirror_average else 1)
    grid_pts = int(sum(res["mesh"]["grid_points_evaluated"]))
    color_pts = int(res["mesh"]["field_points_queried"]) - grid_pts
    flops: dict[str, float | None] = {k: None for k in stages}
    flops["sketch_to_mask"] = counter.flops.get("sketch_to_mask", 0.0)
    flops["planes"] = counter.flops.get("planes", 0.0)
    flops["density_grid"] = float(grid_pts * per_point)
    flops["vertex_colors"] = float(color_pts * per_point)
    floor = {k: (None if f is None else f / (rate_gflops * 1e9)) for k, f in flops.items()}
    return {"result": res, "flops": flops, "compute_floor_s": floor, "decoder_flops_per_point": per_point,
            "grid_points_evaluated": grid_pts, "color_points_queried": color_pts}


def _mask512(path: Path) -> np.ndarray:
    """The job's label mask at 512 x 512: the generator's cost does not depend on the mask's content, so the
    job's mask, resized, stands in for the naive baseline's input."""
    from PIL import Image

    mask512 = np.asarray(Image.open(path))
    if mask512.shape != (512, 512):
        mask512 = np.asarray(Image.fromarray(mask512.astype(np.uint8)).resize((512, 512), Image.NEAREST))
    return mask512


def run_bench(source: Any = None, resolutions: tuple[int, ...] = (128,), repeats: int = 3, threads: int = 0,
              weights_dir: str | Path | None = None, device: str = "cpu", views: int = 6,
              naive_blocks: int = 4, log: Any = None, blender: bool = True, blender_repeats: int = 3) -> dict:
    """Run the whole bench; returns the JSON-able report (see the module docstring).

    Args:
        source: sketch image / stroke JSON path (default ``examples/head_front.json``).
        resolutions: grid resolutions (each one of backend.pipeline.RESOLUTIONS).
        repeats: timed runs per resolution after one warm-up (>= 1).
        threads: torch CPU threads (0 = leave torch's choice).
        blender: time the Blender import of each resolution's mesh when bpy is importable (subprocess).
        blender_repeats: imports per resolution (>= 1; median reported).

    Raises:
        ValueError: repeats or blender_repeats < 1 or an unknown resolution; PipelineError from loading or generating.
    """
    import torch

    from backend.pipeline import RESOLUTIONS, load_models

    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, not {repeats}")
    if blender_repeats < 1:
        raise ValueError(f"blender repeats must be >= 1, not {blender_repeats}")
    bad = [r for r in resolutions if r not in RESOLUTIONS]
    if bad:
        raise ValueError(f"resolutions {bad} not allowed; choose from {RESOLUTIONS}")
    if threads:
        torch.set_num_threads(threads)
    source = str(source or DEFAULT_INPUT)
    t0 = time.perf_counter()
    models = load_models(weights_dir, device)
    load_s = time.perf_counter() - t0
    rate = matmul_gflops()
    report = {"input": source, "device": models.device, "threads": torch.get_num_threads(),
              "cpu_count": os.cpu_count(), "load_models_s": load_s, "matmul_gflops": rate,
              "load_average_before": os.getloadavg()[0], "resolutions": []}
    with tempfile.TemporaryDirectory(prefix="s3d-bench-") as tmp:
        for r in resolutions:
            if log:
                log(f"resolution {r}: warm-up + {repeats} runs ...")
            report["resolutions"].append(bench_resolution(source, models, r, repeats, views, Path(tmp), rate,
                                                          naive_blocks, blender, blender_repeats))
    report["peak_rss_mb"] = _peak_rss_mb()
    return report


def format_report(rep: dict) -> str:
    """The report as plain-text tables."""
    lines = [f"input {rep['input']}; device {rep['device']}; threads {rep['threads']} of {rep['cpu_count']} cores; "
             f"matmul {rep['matmul_gflops']:.1f} GFLOP/s; load average before {rep['load_average_before']:.2f}; "
             f"models loaded in {rep['load_models_s']:.2f} s; peak RSS {rep['peak_rss_mb']:.0f} MB"]
    for r in rep["resolutions"]:
        lines.append(f"\nresolution {r['resolution']} (median of {r['repeats']} after a warm-up; {r['vertices']} "
                     f"vertices; grid points {r['grid_points_evaluated']} of {r['grid_points_dense']} dense; "
                     f"colour points {r['color_points_queried']})")
        lines.append(f"{'stage':<16}{'median s':>10}{'share':>8}{'GFLOP':>10}{'floor s':>10}{'x floor':>10}")
        for k, v in r["median_s"].items():
            if k == "total":
                continue
            f, fl, m = r["flops"].get(k), r["compute_floor_s"].get(k), r["time_over_floor"].get(k)
            lines.append(f"{k:<16}{v:>10.3f}{v / r['median_s']['total']:>8.1%}"
                         f"{'-' if f is None else f'{f / 1e9:.2f}':>10}{'-' if fl is None else f'{fl:.4f}':>10}"
                         f"{'-' if m is None else f'{m:.0f}':>10}")
        lines.append(f"{'total':<16}{r['median_s']['total']:>10.3f}")
        if "blender_import" in r:
            lines.append(format_blender_row(r["blender_import"]))
        nb = r["naive_baseline"]
        lines.append(f"naive baseline (generator re-run per {NAIVE_BLOCK}^3 block, {nb['blocks']} blocks, "
                     f"{nb['blocks_timed']} timed, {nb['seconds_per_block']:.3f} s each): {nb['seconds_estimated']:.1f} s "
                     f"vs planes + density_grid {nb['ours_planes_plus_density_grid_s']:.2f} s -> "
                     f"{nb['speed_ratio']:.0f}x faster")
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", nargs="?", default=None, help="sketch (default examples/head_front.json)")
    p.add_argument("--json", default=None, metavar="OUT", help="also write the report as JSON to OUT")
    p.add_argument("--resolutions", default="128", help="comma separated grid resolutions (128)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per resolution after one warm-up (3)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--weights", default=None, help="weights folder (default: bundled)")
    p.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    p.add_argument("--views", type=int, default=6)
    p.add_argument("--naive-blocks", type=int, default=4, help="naive-baseline blocks timed (4)")
    p.add_argument("--no-blender", action="store_true",
                   help="skip the Blender import row (default: timed in a subprocess when bpy is installed)")
    p.add_argument("--blender-repeats", type=int, default=3, help="Blender imports per resolution (3)")
    p.add_argument("--draft", action="store_true",
                   help="only the live preview's draft job (grid 64, 4 colour views at 48 px): its wall time")


def run_from_args(args: argparse.Namespace) -> int:
    """CLI entry: run, print the tables, write ``--json`` atomically. Exit 2 on bad options."""
    from backend.weights import atomic_write_text

    if args.draft:
        try:
            rep = bench_draft(args.input, args.repeats, args.threads, args.weights, args.device)
        except ValueError as e:
            print(f"s3d bench: error: {e}", file=sys.stderr)
            return 2
        print(format_draft(rep))
        if args.json:
            atomic_write_text(Path(args.json), json.dumps(rep, indent=2) + "\n")
        return 0
    try:
        res = tuple(int(x) for x in args.resolutions.split(",") if x.strip())
        rep = run_bench(args.input, res, args.repeats, args.threads, args.weights, args.device, args.views,
                        args.naive_blocks, log=lambda s: print(s, file=sys.stderr, flush=True),
                        blender=not args.no_blender, blender_repeats=args.blender_repeats)
    except ValueError as e:
        print(f"s3d bench: error: {e}", file=sys.stderr)
        return 2
    print(format_report(rep))
    if args.json:
        atomic_write_text(Path(args.json), json.dumps(rep, indent=2) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="s3d bench", description=__doc__.splitlines()[0])
    add_arguments(p)
    return run_from_args(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
