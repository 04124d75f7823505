"""The ``s3d`` command: ``info``, ``generate``, ``batch``, ``bench`` and ``serve``.

* ``s3d generate INPUT --out DIR [--from-mask] [--seed N] [--resolution 128|192|256] [--no-frame]
  [--views K] [--format ply,glb,obj] [--device auto|cpu|cuda]``: one sketch (image or stroke JSON) or
  label map -> mesh files, mask, views and result.json in DIR; prints where they are and each stage's time.
* ``s3d batch IN_DIR OUT_DIR [--engine local|ray]``: every input in IN_DIR -> OUT_DIR/<name>/; a progress
  bar; resumes (inputs whose result.json records the same input sha256 and options are skipped); failures
  are recorded in OUT_DIR/summary.json and do not stop the batch; parallel worker processes on CPU, or
  Ray actors on a local Ray or a cluster (backend/batch_ray.py, docs/scale-out.md).
* ``s3d serve [--host 127.0.0.1] [--port 0]``: the local job server (backend/server.py); prints
  ``S3D_READY {"host", "port", "token_file"}``.

Exit codes: 0 success, 1 a job failed (the error code and sentence are printed), 2 bad usage.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def cmd_info(args: argparse.Namespace) -> int:
    """Print versions, the device that would be used and why, and the weights with checksum status."""
    from backend.device import choose_device
    from backend.versions import package_versions
    from backend.weights import list_weights, resolve_weights_dir

    choice = choose_device("auto")
    wdir = resolve_weights_dir(args.weights)
    weights = list_weights(wdir)
    info = {"versions": package_versions(), "device": choice.device, "device_reason": choice.reason,
            "weights_dir": str(wdir), "weights": weights}
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print("S3D for Blender")
    for k, v in info["versions"].items():
        print(f"  {k:<24} {v if v is not None else 'not installed'}")
    print(f"device: {choice.device} ({choice.reason})")
    print(f"weights in {info['weights_dir']}:")
    if not weights:
        print("  none found")
    for name, w in weights.items():
        status = f"ok, sha256 {w['sha256'][:12]}... matches its card" if w["ok"] else f"NOT OK: {w['error']}"
        print(f"  {name}: {status}")
    return 0


#: Input file suffixes ``batch`` picks up.
INPUT_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".json")


def _options_from_args(args: argparse.Namespace):
    from backend.pipeline import GenerateOptions, PipelineError

    formats = tuple(f.strip() for f in args.format.split(",") if f.strip())
    try:
        return GenerateOptions(seed=args.seed, resolution=args.resolution, views=args.views, formats=formats,
                               no_frame=args.no_frame, from_mask=args.from_mask,
                               smooth_iterations=args.smooth, max_faces=args.max_faces,
                               symmetric=args.symmetric, colors=_colour_picks(args),
                               texture=args.texture).validate()
    except PipelineError as e:
        print(f"s3d: error [{e.code}]: {e}", file=sys.stderr)
        raise SystemExit(2) from None


def _colour_picks(args: argparse.Namespace) -> dict | None:
    """``--hair-color`` and friends as the ``colors`` option, or None when none is given."""
    picks = {g: getattr(args, f"{g}_color") for g in ("hair", "skin", "eyes", "lips") if getattr(args, f"{g}_color")}
    return picks or None


def _set_threads(n: int | None) -> None:
    if n:
        import torch

        torch.set_num_threads(n)


def _write_intake_debug(source: str, path: Path) -> None:
    """Write the strip of an image sketch's paper clean-up stages (backend/sketch/paper.py) to ``path``;
    a note on stderr for inputs that have no such stages (stroke JSON, label maps)."""
    from backend.export import png_bytes
    from backend.sketch.intake import IntakeError, load_sketch
    from backend.sketch.paper import debug_strip
    from backend.weights import atomic_write_bytes

    try:
        sk = load_sketch(source, keep_stages=True)
    except IntakeError:
        sk = None
    if sk is None or not sk.stages:
        print("s3d generate: --debug-intake: this input has no paper clean-up stages to show", file=sys.stderr)
        return
    atomic_write_bytes(path, png_bytes(debug_strip(sk.stages)))


def cmd_generate(args: argparse.Namespace) -> int:
    """One input -> files in ``--out``; prints the files, the device and each stage's time."""
    from backend.pipeline import PipelineError, generate

    options = _options_from_args(args)
    _set_threads(args.threads)
    last = [""]

    def progress(stage: str, fraction: float) -> None:
        if not args.quiet and stage != last[0] and stage != "done":
            print(f"  [{fraction:4.0%}] {stage} ...", file=sys.stderr, flush=True)
            last[0] = stage

    try:
        result = generate(args.input, args.out, options, weights_dir=args.weights, device=args.device,
                          progress=progress)
    except PipelineError as e:
        print(f"s3d generate: error [{e.code}]: {e}", file=sys.stderr)
        return 1
    if args.debug_intake:
        _write_intake_debug(args.input, Path(args.out) / "intake_debug.png")
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    out = Path(args.out)
    t = result["timings_s"]
    print(f"device: {result['device']} ({result['device_reason']})")
    print(f"mesh:   {', '.join(str(out / f) for f in result['files'] if f.startswith('mesh.'))}")
    print(f"        {result['vertex_count']} vertices, {result['face_count']} faces, "
          f"bounding box {' x '.join(f'{v:.3f}' for v in result['bbox_m']['size'])} m")
    print(f"mask:   {out / 'mask.png'} (ids), {out / 'mask_color.png'}")
    print(f"views:  {out / 'views'}/ ({', '.join(result['vertex_colors']['views'])})")
    print("stage times (s): " + ", ".join(f"{k} {v:.2f}" for k, v in t.items() if k != "total")
          + f"; total {t['total']:.2f}")
    return 0


def _batch_inputs(in_dir: Path) -> list[Path]:
    return sorted(p for p in in_dir.rglob("*") if p.is_file() and p.suffix.lower() in INPUT_SUFFIXES
                  and not any(part.startswith(".") for part in p.relative_to(in_dir).parts))


def batch_plan(in_dir: Path, out_dir: Path) -> list[tuple[Path, Path]]:
    """Every input of ``in_dir`` and its output folder: ``out_dir/<relative path without suffix>``, or
    ``<stem>_<suffix>`` when inputs of one folder share a stem (``head.png`` and ``head.json`` would
    otherwise overwrite each other). Used by both batch engines."""
    inputs = _batch_inputs(in_dir)
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
        return (isinstance(rec, dict) and rec.get("sketch_sha256") is not None
                and rec.get("sketch_sha256") == input_sha256(src) and rec.get("options") == want)
    except (OSError, ValueError):
        return False


_WORKER: dict = {}


def _batch_init(weights: str | None, device: str, threads: int, need_sketch: bool) -> None:
    import torch

    from backend.pipeline import PipelineError, load_models

    torch.set_num_threads(max(1, threads))
    try:
        _WORKER["models"] = load_models(weights, device, need_sketch=need_sketch)
    except PipelineError as e:
        _WORKER["error"] = {"code": e.code, "message": str(e)}


def _batch_one(task: tuple[str, str, dict]) -> dict:
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


def cmd_batch(args: argparse.Namespace) -> int:
    """Every input of ``IN_DIR`` -> ``OUT_DIR/<relative path without suffix>/``; summary.json."""
    import dataclasses
    import multiprocessing as mp

    from tqdm import tqdm

    from backend.weights import atomic_write_text

    in_dir, out_dir = Path(args.in_dir), Path(args.out_dir)
    if not in_dir.is_dir():
        print(f"s3d batch: error [input_not_found]: {in_dir} is not a folder", file=sys.stderr)
        return 2
    options = _options_from_args(args)
    if getattr(args, "engine", "local") == "ray":
        from backend.batch_ray import run_from_args

        return run_from_args(args, options)
    plan = batch_plan(in_dir, out_dir)
    inputs = [p for p, _ in plan]
    out_dir.mkdir(parents=True, exist_ok=True)
    todo, skipped = [], []
    for p, dest in plan:
        if not args.force and finished_result(p, dest, dataclasses.asdict(options)):
            skipped.append(str(p))
            continue
        todo.append((str(p), str(dest), dataclasses.asdict(options)))
    device = args.device
    cpu = os.cpu_count() or 1
    workers = args.workers or max(1, min(cpu, 4))
    if device == "cuda":
        workers = 1
    workers = max(1, min(workers, len(todo) or 1))
    threads = args.threads or max(1, cpu // workers)
    results: list[dict] = []
    if todo:
        if workers == 1:
            _batch_init(args.weights, device, threads, not options.from_mask)
            it = map(_batch_one, todo)
            for r in tqdm(it, total=len(todo), desc="s3d batch", unit="file", disable=args.quiet):
                results.append(r)
        else:
            ctx = mp.get_context("spawn")
            with ctx.Pool(workers, initializer=_batch_init,
                          initargs=(args.weights, device, threads, not options.from_mask)) as pool:
                for r in tqdm(pool.imap_unordered(_batch_one, todo), total=len(todo), desc="s3d batch",
                              unit="file", disable=args.quiet):
                    results.append(r)
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


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the local job server until interrupted."""
    from backend.server import StartupError, serve

    _set_threads(args.threads)
    try:
        return serve(args.host, args.port, args.token_file, args.weights, args.device, args.jobs_dir,
                     args.max_queue, args.allow_remote, quiet=not args.verbose,
                     exit_with_parent=args.exit_with_parent)
    except StartupError as e:
        print(f"s3d serve: error [{e.code}]: {e}", file=sys.stderr)
        return 2


def _add_job_options(p: argparse.ArgumentParser) -> None:
    from backend.options import GenerateOptions

    p.add_argument("--from-mask", action="store_true", help="inputs are label maps (CelebAMask-HQ ids or colours)")
    p.add_argument("--seed", type=int, default=0, help="the one seed of the job (z and all jitter), default 0")
    p.add_argument("--resolution", type=int, default=128, help="marching-cubes cells a side: 64|128|192|256 (128)")
    p.add_argument("--no-frame", action="store_true", help="skip auto-framing (input already in the canonical framing)")
    p.add_argument("--views", type=int, default=6, help="rendered views for colours and views/*.png, 4..12 (6)")
    p.add_argument("--format", default="ply", help="mesh files, comma separated: ply,glb,obj (ply)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="torch device (auto)")
    p.add_argument("--weights", default=None, help="weights folder (default: bundled weights/ or $S3D_WEIGHTS_DIR)")
    p.add_argument("--smooth", type=int, default=GenerateOptions.smooth_iterations,
                   help=f"Taubin smoothing iterations, 0 = off ({GenerateOptions.smooth_iterations})")
    p.add_argument("--max-faces", type=int, default=200_000, help="decimate to this many faces, 0 = off (200000)")
    p.add_argument("--symmetric", action="store_true", help="a mirror-symmetric head (left/right labels kept right)")
    p.add_argument("--texture", type=int, nargs="?", const=1024, default=None, metavar="SIZE",
                   help="also bake the vertex colours into texture.png (SIZE px a side, 256..4096, 1024 without a "
                        "value) with UVs in mesh.obj / mesh.glb; needs --format with obj or glb")
    for group in ("hair", "skin", "eyes", "lips"):
        p.add_argument(f"--{group}-color", metavar="#RRGGBB", help=f"{group} colour (sRGB hex), shading kept")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--quiet", action="store_true", help="no progress output")


def cmd_bench(args: argparse.Namespace) -> int:
    """Per-stage times, FLOPs and compute floors, naive baseline (backend/bench.py)."""
    from backend.bench import run_from_args

    return run_from_args(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="s3d", description="S3D: sketch -> 3D head (CVPRW 2025) backend")
    sub = p.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="versions, device and weights status")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.add_argument("--weights", default=None, help="weights folder (default: the bundled weights/)")
    info.set_defaults(func=cmd_info)

    gen = sub.add_parser("generate", help="sketch image / stroke JSON / mask -> coloured head mesh")
    gen.add_argument("input", help="sketch image (PNG, JPEG, WebP, ...), stroke JSON, or a mask with --from-mask")
    gen.add_argument("--out", required=True, help="output folder")
    gen.add_argument("--json", action="store_true", help="print result.json instead of the summary")
    gen.add_argument("--debug-intake", action="store_true",
                     help="also write intake_debug.png: the paper clean-up stages of an image sketch, side by side")
    _add_job_options(gen)
    gen.set_defaults(func=cmd_generate)

    bat = sub.add_parser("batch", help="every sketch in a folder -> one output folder each")
    bat.add_argument("in_dir")
    bat.add_argument("out_dir")
    bat.add_argument("--workers", type=int, default=0, help="worker processes (default: CPU cores, max 4; 1 on CUDA)")
    bat.add_argument("--force", action="store_true",
                     help="redo inputs already converted with the same input and options")
    bat.add_argument("--engine", choices=["local", "ray"], default="local",
                     help="local: worker processes on this machine (default); ray: Ray actors, local or a cluster "
                          "(pip install -e '.[cluster]'; docs/scale-out.md)")
    bat.add_argument("--address", default=None,
                     help="with --engine ray: a running cluster ('auto' or host:port; default $RAY_ADDRESS, "
                          "else an embedded local Ray)")
    bat.add_argument("--num-gpus-per-worker", type=float, default=0.0,
                     help="with --engine ray: GPUs each Ray worker reserves (0 = CPU; 0.5 = two workers a GPU)")
    bat.add_argument("--max-retries", type=int, default=3,
                     help="with --engine ray: times an item is retried after its worker died (3)")
    _add_job_options(bat)
    bat.set_defaults(func=cmd_batch)

    from backend.bench import add_arguments as add_bench_arguments

    ben = sub.add_parser("bench", help="per-stage times, FLOPs vs the matmul rate, naive per-block baseline")
    add_bench_arguments(ben)
    ben.set_defaults(func=cmd_bench)

    srv = sub.add_parser("serve", help="local job server for the Blender add-on (HTTP JSON API v1)")
    srv.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    srv.add_argument("--port", type=int, default=0, help="port, 0 = a free one (default)")
    srv.add_argument("--token-file", default=None, help="where to write the per-launch token (mode 0600)")
    srv.add_argument("--weights", default=None, help="weights folder")
    srv.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    srv.add_argument("--jobs-dir", default=None, help="folder for job outputs (default: a new temp folder)")
    srv.add_argument("--max-queue", type=int, default=8, help="waiting jobs before 429 queue_full (8)")
    srv.add_argument("--allow-remote", action="store_true", help="allow a non-loopback --host (explicit opt-in)")
    srv.add_argument("--exit-with-parent", action="store_true",
                     help="shut down when the starting process (e.g. Blender) exits, even if it was killed")
    srv.add_argument("--threads", type=int, default=0, help="torch CPU threads")
    srv.add_argument("--verbose", action="store_true", help="log every request to stderr")
    srv.set_defaults(func=cmd_serve)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
