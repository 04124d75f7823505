"""Headless batch conversion: every sketch in a folder -> a .blend with the head, plus the mesh files.

Usage (either Blender in background mode or the ``bpy`` module)::

    blender -b -P blender_addon/batch.py -- IN_DIR OUT_DIR [options]
    python -m blender_addon.batch IN_DIR OUT_DIR [options]

Inputs: every sketch image (``.png .jpg .jpeg .bmp .tif .tiff .webp``: dark lines on white) and every
Grease Pencil object in every ``.blend`` file of ``IN_DIR`` (not recursive). Outputs: ``OUT_DIR/<name>/``
with the job's files (``mesh.ply``, ``mask.png``, ``result.json``, ...) and ``OUT_DIR/<name>.blend`` with
the imported head (``--one-scene``: all heads side by side in ``OUT_DIR/scene.blend``), and
``OUT_DIR/batch_summary.json`` (per head: its folder, size and the backend's mask ``warnings``, which
are printed too). ``--max-faces N`` decimates each head to about N faces in the backend (1000..5000000);
``--quad-remesh`` turns each imported head into quads (QuadriFlow, colours and vertex groups kept);
``--texture PX`` bakes its colours into a PX x PX image texture (``OUT_DIR/<name>/texture.png``). Exit
code 0 when every sketch converted, 1 when some failed, 2 for bad arguments. Runs the synchronous path (timers never fire in background mode).

``--engine ray [--address A] [--workers N] [--num-gpus-per-worker G]``: instead of one job at a time
through the add-on's backend, every sketch is captured first and all are converted in one
``s3d batch --engine ray`` run of the backend's Python (an embedded local Ray, or the cluster at ``A``;
docs/scale-out.md), then imported; a re-run skips heads already converted with the same options.

The backend's Python: ``--backend-python``, else ``$S3D_BACKEND_PYTHON``, else the running Python when
it has torch (``python -m`` from the backend environment), else the add-on's preference / created
environment / the checkout's ``.venv``.
"""
from __future__ import annotations

import argparse
import base64
import importlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

if not __package__:  # run as a script (blender -P .../batch.py): import the add-on package by its folder
    _here = Path(__file__).resolve().parent
    sys.path.insert(0, str(_here.parent))
    __package__ = _here.name
    importlib.import_module(__package__)

import bpy  # noqa: E402

from .generation import (MAX_FACES, MIN_FACES, GenerateSettings, InputError, build_request,  # noqa: E402
                         import_results, push_undo, run_sync)
from .scene.gp_capture import is_grease_pencil  # noqa: E402
from .scene.importer import MeshImportError  # noqa: E402
from .transport.backend_process import find_backend_root, stop_all  # noqa: E402
from .transport.http_client import BackendError  # noqa: E402
from .transport.job_runner import JobCancelled, JobResult  # noqa: E402
from .ui.preferences import auto_backend_python  # noqa: E402

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
SPACING_M = 0.45


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="s3d-batch", description="Convert a folder of sketches into Blender heads")
    p.add_argument("in_dir", help="folder with sketch images and/or .blend files with Grease Pencil objects")
    p.add_argument("out_dir", help="output folder (created)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resolution", type=int, default=128, help="marching-cubes grid (quality)")
    p.add_argument("--views", type=int, default=6, help="colour views")
    p.add_argument("--no-frame", action="store_true", help="do not auto-frame the sketches")
    p.add_argument("--symmetric", action="store_true", help="mirror-symmetric heads (left/right labels kept right)")
    p.add_argument("--subject", choices=("human", "cat"), default="human",
                   help="human heads (default) or cats (the backend's cat networks)")
    p.add_argument("--projection", choices=("FRONT", "CAMERA"), default="FRONT",
                   help="Grease Pencil projection (CAMERA: the .blend's scene camera)")
    p.add_argument("--one-scene", action="store_true", help="all heads in one scene.blend instead of one .blend each")
    p.add_argument("--formats", default="ply", help="comma-separated mesh formats (ply, glb, obj)")
    p.add_argument("--max-faces", type=int, default=0,
                   help="decimate each head to about this many faces (1000..5000000; 0: the backend's default)")
    p.add_argument("--quad-remesh", action="store_true",
                   help="remesh each imported head into quads (QuadriFlow), keeping colours and vertex groups")
    p.add_argument("--texture", type=int, default=0, metavar="PX",
                   help="bake each head's colours into a PX x PX texture (1024, 2048 or 4096; 0: none)")
    p.add_argument("--backend-python", default="", help="Python executable of the backend environment")
    p.add_argument("--weights-dir", default="", help="weights folder (default: the bundled weights)")
    p.add_argument("--engine", choices=("server", "ray"), default="server",
                   help="server: one job at a time through the add-on's backend (default); ray: all sketches "
                        "in one `s3d batch --engine ray` run (local Ray or a cluster; docs/scale-out.md)")
    p.add_argument("--address", default="", help="with --engine ray: the Ray cluster (auto or host:port)")
    p.add_argument("--workers", type=int, default=0, help="with --engine ray: Ray workers (0: the backend's default)")
    p.add_argument("--num-gpus-per-worker", type=float, default=0.0, help="with --engine ray: GPUs per worker")
    args = p.parse_args(argv)
    if args.max_faces and not MIN_FACES <= args.max_faces <= MAX_FACES:
        p.error(f"--max-faces must be 0 (the backend's default) or {MIN_FACES}..{MAX_FACES}, not {args.max_faces}")
    if args.texture not in (0, 1024, 2048, 4096):
        p.error(f"--texture must be 0, 1024, 2048 or 4096, not {args.texture}")
    return args


def _script_argv() -> list[str]:
    """Arguments meant for this script: after ``--`` when run by Blender, else ``sys.argv[1:]``."""
    if "--" in sys.argv:
        return sys.argv[sys.argv.index("--") + 1:]
    return sys.argv[1:]


def choose_backend_python(explicit: str) -> str:
    """See the module docstring for the order."""
    if explicit:
        return explicit
    if os.environ.get("S3D_BACKEND_PYTHON"):
        return os.environ["S3D_BACKEND_PYTHON"]
    if importlib.util.find_spec("torch") is not None and os.path.basename(sys.executable).startswith("python"):
        return sys.executable
    return auto_backend_python()


def clear_scene() -> None:
    """Empty the current file (objects, meshes, images, Grease Pencil data, orphans)."""
    for obj in list(bpy.data.objects):
        bpy.data.objects.remove(obj)
    for coll in (bpy.data.meshes, bpy.data.images, bpy.data.cameras, bpy.data.lights):
        for block in list(coll):
            if block.users == 0:
                coll.remove(block)
    bpy.data.orphans_purge(do_recursive=True)


def load_grease_pencil_objects(blend_path: Path) -> list:
    """Append every Grease Pencil object (and camera objects) of a .blend into the current scene."""
    with bpy.data.libraries.load(str(blend_path), link=False) as (src, dst):
        dst.objects = list(src.objects)
    scene = bpy.context.scene
    gp_objects = []
    for obj in dst.objects:
        if obj is None:
            continue
        if is_grease_pencil(obj) or obj.type == "CAMERA":
            scene.collection.objects.link(obj)
            if obj.type == "CAMERA" and scene.camera is None:
                scene.camera = obj
            if is_grease_pencil(obj):
                gp_objects.append(obj)
        elif obj.users == 0:
            bpy.data.objects.remove(obj)
    return gp_objects


def _convert(context, settings: GenerateSettings, name: str, out_dir: Path, offset_x: float) -> dict:
    req = build_request(context, settings, name=name)
    req.out_dir = str(out_dir / name)
    req.tag["offset"] = (offset_x, 0.0, 0.0)
    t0 = time.monotonic()
    obj = run_sync(context, [req])[0]
    return {"name": name, "object": obj.name, "folder": req.out_dir, "seconds": round(time.monotonic() - t0, 2),
            "vertices": len(obj.data.vertices), "faces": len(obj.data.polygons),
            "warnings": str(obj.get("s3d_warnings", "") or "").splitlines()}


def _sketch_items(src: Path, base: GenerateSettings, failed: list[dict]) -> list[tuple[str, GenerateSettings]]:
    """The sketches of one input file as ``(name, settings)``: the image itself, or each Grease Pencil object
    of a .blend (loaded into the current scene). An unreadable .blend or one without Grease Pencil is
    appended to ``failed`` and gives no item."""
    if src.suffix.lower() != ".blend":
        return [(src.stem, GenerateSettings(**{**base.__dict__, "source": "IMAGE", "image_path": str(src)}))]
    try:
        gp_objects = load_grease_pencil_objects(src)
    except (OSError, RuntimeError) as e:
        failed.append({"source": str(src), "error": f"cannot read {src.name}: {e}"})
        return []
    if not gp_objects:
        failed.append({"source": str(src), "error": f"{src.name} has no Grease Pencil object"})
    return [(f"{src.stem}_{obj.name}" if len(gp_objects) > 1 else src.stem,
             GenerateSettings(**{**base.__dict__, "source": "GREASE_PENCIL", "gp_object": obj})) for obj in gp_objects]


def _record_head(args: argparse.Namespace, out_dir: Path, info: dict, done: list[dict], detail: str) -> None:
    """A converted head: saved as ``OUT/<name>.blend`` (unless ``--one-scene``), added to ``done`` and
    printed with the backend's mask warnings."""
    name = info["name"]
    if not args.one_scene:
        blend = out_dir / f"{name}.blend"
        bpy.ops.wm.save_as_mainfile(filepath=str(blend), copy=True, compress=True)
        info["blend"] = str(blend)
    done.append(info)
    print(f"s3d-batch: {name} -> {info['folder']} ({detail})")
    for msg in info["warnings"]:  # the backend found the mask implausible
        print(f"s3d-batch: warning for {name}: {msg}")


def _save_one_scene(out_dir: Path, done: list[dict]) -> None:
    """``--one-scene``: save every converted head's scene as ``OUT/scene.blend`` and point each record at it."""
    if not done:
        return
    blend = out_dir / "scene.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend), copy=True, compress=True)
    for info in done:
        info["blend"] = str(blend)


def _sources(in_dir: Path) -> list[Path]:
    return sorted(p for p in in_dir.iterdir() if p.is_file() and (p.suffix.lower() in IMAGE_SUFFIXES or p.suffix.lower() == ".blend"))


def backend_batch_command(python: str, stage: Path, out_dir: Path, args: argparse.Namespace) -> list[str]:
    """The ``s3d batch --engine ray`` command line for the staged sketches, with this batch's options."""
    cmd = [python, "-m", "backend.cli", "batch", str(stage), str(out_dir), "--engine", "ray",
           "--seed", str(args.seed), "--resolution", str(args.resolution), "--views", str(args.views),
           "--format", ",".join(f.strip() for f in args.formats.split(",") if f.strip())]
    if args.no_frame:
        cmd.append("--no-frame")
    if args.symmetric:
        cmd.append("--symmetric")
    if args.max_faces:
        cmd += ["--max-faces", str(args.max_faces)]
    if args.weights_dir:
        cmd += ["--weights", str(Path(args.weights_dir).resolve())]
    if args.address:
        cmd += ["--address", args.address]
    if args.workers:
        cmd += ["--workers", str(args.workers)]
    if args.num_gpus_per_worker:
        cmd += ["--num-gpus-per-worker", str(args.num_gpus_per_worker)]
    return cmd


def _main_ray(args: argparse.Namespace, sources: list[Path], in_dir: Path, out_dir: Path,
              base: GenerateSettings) -> int:
    """``--engine ray``: capture every sketch (images, Grease Pencil strokes) into a staging folder, convert
    them all in one ``s3d batch --engine ray`` run into ``OUT_DIR/<name>/``, then import each head and save
    the .blend files as the server path does (the .blend files hold the heads; Grease Pencil sketches stay
    in their source files)."""
    context = bpy.context
    stage = out_dir / ".s3d-ray-inputs"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    items: list[tuple[str, Path, object]] = []
    failed: list[dict] = []
    for src in sources:
        clear_scene()
        pending = _sketch_items(src, base, failed)
        for name, settings in pending:
            while any(n == name for n, _, _ in items):  # a.png and a.blend: one folder each
                name += "_2"
            try:
                req = build_request(context, settings, name=name)
            except (InputError, OSError, ValueError) as e:
                failed.append({"source": str(src), "name": name, "error": str(e)})
                print(f"s3d-batch: FAILED {name}: {e}", file=sys.stderr)
                continue
            if req.job_input["kind"] == "strokes":
                (stage / f"{name}.json").write_text(json.dumps(req.job_input["data"]))
            else:
                (stage / f"{name}.png").write_bytes(base64.b64decode(req.job_input["data"]))
            items.append((name, src, req))
    clear_scene()
    backend_failed: dict[str, dict] = {}
    if items:
        root = find_backend_root()
        env = dict(os.environ)
        env.pop("PYTHONHOME", None)  # Blender's own Python home must not leak into the backend's
        if root is not None:
            env["PYTHONPATH"] = str(root) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        cmd = backend_batch_command(os.environ["S3D_BACKEND_PYTHON"], stage, out_dir, args)
        print("s3d-batch: " + " ".join(cmd), flush=True)
        try:
            rc = subprocess.run(cmd, env=env, cwd=str(out_dir)).returncode
        except OSError as e:
            rc = None
            print(f"s3d-batch: cannot run the backend: {e}", file=sys.stderr)
        try:
            summary = json.loads((out_dir / "summary.json").read_text())
            backend_failed = {Path(r["input"]).stem: r for r in summary.get("failed", [])}
        except (OSError, ValueError):
            backend_failed = {name: {"code": "backend_failed", "message": f"s3d batch exited with {rc}"}
                              for name, _, _ in items}
    done: list[dict] = []
    slot = 0
    try:
        for name, src, req in items:
            folder = out_dir / name
            if name in backend_failed or not (folder / "result.json").is_file():
                r = backend_failed.get(name, {"code": "missing", "message": "no result"})
                failed.append({"source": str(src), "name": name, "error": f"[{r.get('code')}] {r.get('message')}"})
                print(f"s3d-batch: FAILED {name}: [{r.get('code')}] {r.get('message')}", file=sys.stderr)
                continue
            if not args.one_scene:
                clear_scene()
            req.out_dir = str(folder)
            req.tag["offset"] = (slot * SPACING_M if args.one_scene else 0.0, 0.0, 0.0)
            if bpy.app.background:
                push_undo("S3D: before import")
            try:
                obj = import_results(context, [JobResult(request=req, job_id="", status={}, files=[])])[0]
            except (MeshImportError, OSError, ValueError) as e:
                failed.append({"source": str(src), "name": name, "error": str(e)})
                print(f"s3d-batch: FAILED {name}: {e}", file=sys.stderr)
                continue
            slot += 1
            info = {"name": name, "object": obj.name, "folder": str(folder), "source": str(src),
                    "vertices": len(obj.data.vertices), "faces": len(obj.data.polygons),
                    "warnings": str(obj.get("s3d_warnings", "") or "").splitlines()}
            _record_head(args, out_dir, info, done, f"{info['vertices']} vertices")
        if args.one_scene:
            _save_one_scene(out_dir, done)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return _write_summary(in_dir, out_dir, done, failed, engine="ray")


def _write_summary(in_dir: Path, out_dir: Path, done: list, failed: list, engine: str = "server") -> int:
    summary = {"in_dir": str(in_dir), "out_dir": str(out_dir), "engine": engine, "converted": done, "failed": failed}
    tmp = out_dir / "batch_summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2))
    os.replace(tmp, out_dir / "batch_summary.json")
    print(f"s3d-batch: {len(done)} converted, {len(failed)} failed; summary in {out_dir / 'batch_summary.json'}")
    return 0 if not failed else 1


def main(argv: list[str] | None = None) -> int:
    """Run the batch; returns the exit code (see the module docstring)."""
    args = parse_args(_script_argv() if argv is None else argv)
    in_dir, out_dir = Path(args.in_dir).resolve(), Path(args.out_dir).resolve()
    if not in_dir.is_dir():
        print(f"s3d-batch: input folder {in_dir} does not exist", file=sys.stderr)
        return 2
    sources = _sources(in_dir)
    if not sources:
        print(f"s3d-batch: no sketch images or .blend files in {in_dir}", file=sys.stderr)
        return 2
    out_dir.mkdir(parents=True, exist_ok=True)
    os.environ["S3D_BACKEND_PYTHON"] = choose_backend_python(args.backend_python)
    if args.weights_dir:
        os.environ["S3D_WEIGHTS_DIR"] = str(Path(args.weights_dir).resolve())
    base = GenerateSettings(seed=args.seed, resolution=args.resolution, views=args.views, no_frame=args.no_frame,
                            symmetric=args.symmetric, subject=args.subject,
                            projection=args.projection, formats=[f.strip() for f in args.formats.split(",") if f.strip()],
                            max_faces=args.max_faces, quad_remesh=args.quad_remesh, texture_size=args.texture)
    if args.engine == "ray":
        return _main_ray(args, sources, in_dir, out_dir, base)
    done, failed = [], []
    context = bpy.context
    clear_scene()
    slot = 0
    try:
        for src in sources:
            if src.suffix.lower() == ".blend" and not args.one_scene:
                clear_scene()
            items = _sketch_items(src, base, failed)
            for name, settings in items:
                if not args.one_scene and src.suffix.lower() != ".blend":
                    clear_scene()
                offset = slot * SPACING_M if args.one_scene else 0.0
                try:
                    info = _convert(context, settings, name, out_dir, offset)
                except (BackendError, JobCancelled, InputError, MeshImportError, OSError, ValueError) as e:
                    failed.append({"source": str(src), "name": name, "error": str(e)})
                    print(f"s3d-batch: FAILED {name}: {e}", file=sys.stderr)
                    continue
                slot += 1
                info["source"] = str(src)
                _record_head(args, out_dir, info, done, f"{info['vertices']} vertices, {info['seconds']} s")
        if args.one_scene:
            _save_one_scene(out_dir, done)
    finally:
        stop_all()
    return _write_summary(in_dir, out_dir, done, failed)


if __name__ == "__main__":
    sys.exit(main())
