"""Benchmark ``s3d generate``: per-stage times, their share, and peak memory (issue 6 speed target).

Each repetition runs the whole job in a fresh child process (``python -m backend.cli generate``), so
model loading, imports and the first-call costs count as they do for a user, and the child's peak
resident memory (``ru_maxrss`` of the children) is the job's peak memory. Stage times come from the
job's result.json.

Usage::

    python benchmarks/bench_generate.py [INPUT] [--repeats 3] [--threads 2] [--resolution 128]
        [--weights DIR] [--random-lite]

``--random-lite`` benchmarks random-initialised networks of the ``lite`` profile (for when trained
weights are not there yet); their field has no surface, so an analytic head-sized ellipsoid is added to
the occupancy (as in the tests) so that the mesh and colour stages do real work. Timings of trained
weights differ mainly in the mesh size.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHILD_RANDOM_LITE = r"""
import sys, torch
sys.path.insert(0, {tests!r})
from s3d_tiny_weights import sphere_query
from backend.models.mask2triplane import Mask2Triplane
Mask2Triplane.query = sphere_query(Mask2Triplane.query)
from backend.cli import main
sys.exit(main(sys.argv[1:]))
"""


def make_random_lite(weights_dir: Path) -> None:
    import torch

    from backend.frame import BOX_SIZE_M
    from backend.models.config import get_config
    from backend.models.loading import LABEL_SET, build_model
    from backend.weights import save_weights

    torch.manual_seed(0)
    for kind in ("mask2triplane", "sketch2mask"):
        cfg = get_config("lite", kind)
        card = {"kind": kind, "profile": "lite", "config": cfg, "label_set": LABEL_SET, "box_size_m": BOX_SIZE_M,
                "data": "none: random initialisation for benchmarking"}
        save_weights(build_model(kind, cfg).state_dict(), card, f"{kind}_lite", weights_dir)


def run_once(inp: str, out: Path, args: argparse.Namespace, weights: str | None) -> tuple[dict, float, float]:
    cmd = [sys.executable]
    if args.random_lite:
        cmd += ["-c", CHILD_RANDOM_LITE.format(tests=str(ROOT / "tests"))]
    else:
        cmd += ["-m", "backend.cli"]
    cmd += ["generate", inp, "--out", str(out), "--resolution", str(args.resolution), "--views", str(args.views),
            "--device", args.device, "--quiet", "--json"]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    if weights:
        cmd += ["--weights", weights]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"generate failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    # ru_maxrss of children is the max over all children so far: an upper bound of this job's peak
    return json.loads(proc.stdout), wall, after.ru_maxrss / 1024.0, cpu


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("input", nargs="?", default=str(ROOT / "examples" / "head_front.json"))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch threads in the job (default: torch's choice)")
    p.add_argument("--resolution", type=int, default=128)
    p.add_argument("--views", type=int, default=6)
    p.add_argument("--device", default="auto")
    p.add_argument("--weights", default=None)
    p.add_argument("--random-lite", action="store_true", help="random lite networks + analytic surface")
    args = p.parse_args(argv)

    sys.path.insert(0, str(ROOT))
    tmp = Path(tempfile.mkdtemp(prefix="s3d-bench-"))
    weights = args.weights
    if args.random_lite:
        weights = str(tmp / "weights")
        make_random_lite(Path(weights))
    runs = []
    for i in range(args.repeats):
        load = os.getloadavg()[0]
        res, wall, peak, cpu = run_once(args.input, tmp / f"run{i}", args, weights)
        runs.append((res, wall, peak, cpu))
        print(f"run {i + 1}: total {res['timings_s']['total']:.2f} s in the job, {wall:.2f} s wall incl. process "
              f"start, {cpu:.2f} s CPU (user+sys) of the process, peak RSS {peak:.0f} MB, {res['vertex_count']} "
              f"vertices; load average before the run {load:.2f}", flush=True)
    stages = [k for k in runs[0][0]["timings_s"] if k != "total"]
    med = {k: statistics.median(r[0]["timings_s"][k] for r in runs) for k in stages}
    total = statistics.median(r[0]["timings_s"]["total"] for r in runs)
    wall = statistics.median(r[1] for r in runs)
    print(f"\ninput {args.input}; resolution {args.resolution}; views {args.views}; device {runs[0][0]['device']}; "
          f"threads {args.threads or 'default'}; cpu cores {os.cpu_count()}; "
          f"weights {'random lite + analytic surface' if args.random_lite else (args.weights or 'bundled')}")
    print(f"{'stage':<16}{'median s':>10}{'share':>8}")
    for k in stages:
        print(f"{k:<16}{med[k]:>10.3f}{med[k] / total:>8.1%}")
    print(f"{'total (job)':<16}{total:>10.3f}")
    print(f"{'wall (process)':<16}{wall:>10.3f}")
    print(f"{'CPU (process)':<16}{statistics.median(r[3] for r in runs):>10.3f}   (user+sys of all threads; with "
          "--threads 1 this bounds the wall time of an unloaded machine)")
    print(f"peak memory (max RSS of the job processes): {max(r[2] for r in runs):.0f} MB")
    r0 = runs[0][0]
    print(f"grid points evaluated {sum(r0['mesh']['grid_points_evaluated'])} of {r0['mesh']['grid_points_dense']} "
          f"dense; field points queried {r0['mesh']['field_points_queried']}; faces {r0['face_count']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
