#!/usr/bin/env python3
"""Benchmark the add-on's import path (Blender's PLY importer + label attribute, vertex groups, material).

Usage::

    python scripts/bench_addon_import.py [--subdivisions 7] [--repeats 1] [--json]
    python scripts/bench_addon_import.py --job-dir JOB_DIR [--repeats 3] [--json]

Without ``--job-dir``, writes a job folder with an icosphere (subdivision 7: 163,842 vertices, 327,680
faces, 7 classes) to a temporary folder and times it. With ``--job-dir``, times that job folder (the
output of ``s3d generate``; ``s3d bench`` uses this on the mesh it just generated). Each repeat starts
from an empty factory scene (``wm.read_factory_settings(use_empty=True)``: no objects, meshes or
materials, so the material is created again each time) and times ``read_ply_mesh`` (Blender's
``bpy.ops.wm.ply_import`` plus the label attribute; reported as ``read_ply``) and
``blender_addon.scene.importer.import_job_folder`` (read + mesh + colour attribute + vertex groups +
material) under the bpy module. Prints one line, or with ``--json`` one JSON object::

    {"vertices": N, "faces": F, "repeats": R, "import_s": [...], "median_s": s, "read_ply_s": [...],
     "read_ply_median_s": s, "bpy_version": "5.0.1", "job_dir": "..."}

Exit 1 with a message on stderr when the job folder has no readable ``mesh.ply``.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import bpy  # noqa: E402
import numpy as np  # noqa: E402

from backend.export import ply_bytes  # noqa: E402
from blender_addon.scene.importer import MeshImportError, import_job_folder, read_ply_mesh  # noqa: E402


def write_icosphere_job(folder: Path, subdivisions: int) -> None:
    """An icosphere job folder (``mesh.ply`` with random colours and 7 classes, ``result.json``)."""
    import trimesh

    sphere = trimesh.creation.icosphere(subdivisions=subdivisions, radius=0.1)
    v, f = np.asarray(sphere.vertices, np.float32), np.asarray(sphere.faces, np.int32)
    labels = (np.arange(len(v)) % 7 + 1).astype(np.uint8)
    colours = np.random.default_rng(0).random((len(v), 3)).astype(np.float32)  # linear RGB
    (folder / "mesh.ply").write_bytes(ply_bytes(v, f, colours, labels))
    (folder / "result.json").write_text(json.dumps({"seed": 0}))


def time_import(folder: Path, repeats: int) -> dict:
    """Import ``folder`` ``repeats`` times, each into an empty factory scene; times in seconds.

    Raises:
        FileNotFoundError: no ``mesh.ply``. MeshImportError: unreadable mesh.
    """
    read_s, import_s = [], []
    n_v = n_f = 0
    for _ in range(repeats):
        bpy.ops.wm.read_factory_settings(use_empty=True)
        if not (folder / "mesh.ply").is_file():
            raise FileNotFoundError(f"the job folder {folder} has no mesh.ply")
        t = time.perf_counter()
        me, _ = read_ply_mesh(folder / "mesh.ply", "Bench read")
        read_s.append(time.perf_counter() - t)
        n_v, n_f = len(me.vertices), len(me.polygons)
        bpy.data.meshes.remove(me)
        t = time.perf_counter()
        import_job_folder(bpy.context, folder, "Bench")
        import_s.append(time.perf_counter() - t)
    return {"vertices": n_v, "faces": n_f, "repeats": repeats, "import_s": import_s,
            "median_s": statistics.median(import_s), "read_ply_s": read_s,
            "read_ply_median_s": statistics.median(read_s), "bpy_version": bpy.app.version_string,
            "job_dir": str(folder)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--job-dir", default="", help="job folder to import (default: a synthetic icosphere)")
    ap.add_argument("--subdivisions", type=int, default=7, help="icosphere subdivisions without --job-dir (7)")
    ap.add_argument("--repeats", type=int, default=1, help="imports, each into an empty scene (1)")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a line")
    args = ap.parse_args(argv)
    if args.repeats < 1:
        ap.error("--repeats must be >= 1")
    try:
        if args.job_dir:
            rep = time_import(Path(args.job_dir), args.repeats)
        else:
            with tempfile.TemporaryDirectory() as d:
                write_icosphere_job(Path(d), args.subdivisions)
                rep = time_import(Path(d), args.repeats)
                rep["job_dir"] = f"icosphere, {args.subdivisions} subdivisions"
    except (FileNotFoundError, MeshImportError) as e:
        print(f"bench_addon_import: error: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(rep))
    else:
        print(f"{rep['job_dir']}: {rep['vertices']} vertices, {rep['faces']} faces: "
              f"read_ply {rep['read_ply_median_s'] * 1000:.0f} ms; import_job_folder (read + mesh + colour "
              f"attribute + vertex groups + material) {rep['median_s']:.2f} s (median of {rep['repeats']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
