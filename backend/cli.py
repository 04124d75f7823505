"""The ``s3d`` command: ``info``, ``generate``, ``batch``, ``bench`` and ``serve``.

* ``s3d generate INPUT --out DIR [--from-mask] [--seed N] [--resolution 128|192|256] [--no-frame]
  [--views K] [--format ply,glb,obj] [--device auto|cpu|cuda] [--subject human|cat]``: one sketch (image
  or stroke JSON) or label map -> mesh files, mask, views and result.json in DIR; prints where they are and
  each stage's time. ``--subject cat`` uses the cat networks (``<kind>_cat_lite``, seg2cat label maps).
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
import sys
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


def _options_from_args(args: argparse.Namespace):
    from backend.pipeline import GenerateOptions, PipelineError

    formats = tuple(f.strip() for f in args.format.split(",") if f.strip())
    try:
        return GenerateOptions(seed=args.seed, resolution=args.resolution, views=args.views, formats=formats,
                               no_frame=args.no_frame, from_mask=args.from_mask,
                               smooth_iterations=args.smooth, max_faces=args.max_faces,
                               symmetric=args.symmetric, colors=_colour_picks(args),
                               texture=args.texture, subject=args.subject).validate()
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


def cmd_batch(args: argparse.Namespace) -> int:
    """Every input of ``IN_DIR`` -> ``OUT_DIR/<relative path without suffix>/``; summary.json."""
    from backend.batch import run_local_batch

    in_dir, out_dir = Path(args.in_dir), Path(args.out_dir)
    if not in_dir.is_dir():
        print(f"s3d batch: error [input_not_found]: {in_dir} is not a folder", file=sys.stderr)
        return 2
    options = _options_from_args(args)
    if getattr(args, "engine", "local") == "ray":
        from backend.batch_ray import run_from_args

        return run_from_args(args, options)
    return run_local_batch(in_dir, out_dir, options, args.weights, args.device, args.workers, args.threads,
                           args.force, args.quiet)


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

    p.add_argument("--from-mask", action="store_true",
                   help="inputs are label maps (ids or palette colours: CelebAMask-HQ, or seg2cat with --subject cat)")
    p.add_argument("--subject", default="human", choices=["human", "cat"],
                   help="what to make: human heads (default) or cats (the cat networks <kind>_cat_lite)")
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
