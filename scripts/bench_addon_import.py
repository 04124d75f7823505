#!/usr/bin/env python3
"""Benchmark the add-on's import path (PLY reader + mesh, colour attribute, vertex groups, material).

Usage: python scripts/bench_addon_import.py [--subdivisions 7]

Writes a job folder with an icosphere (subdivision 7: 163,842 vertices, 327,680 faces, 7 classes) to
a temporary folder and times ``read_ply`` and ``import_job_folder`` under the bpy module.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import bpy  # noqa: E402
import numpy as np  # noqa: E402
import trimesh  # noqa: E402

from blender_addon.importer import import_job_folder  # noqa: E402
from blender_addon.ply_reader import read_ply, write_ply  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subdivisions", type=int, default=7)
    args = ap.parse_args()
    sphere = trimesh.creation.icosphere(subdivisions=args.subdivisions, radius=0.1)
    v, f = np.asarray(sphere.vertices, np.float32), np.asarray(sphere.faces, np.int32)
    labels = (np.arange(len(v)) % 7 + 1).astype(np.uint8)
    colours = np.random.default_rng(0).integers(0, 256, (len(v), 3)).astype(np.uint8)
    with tempfile.TemporaryDirectory() as d:
        write_ply(Path(d) / "mesh.ply", v, f, colours, labels)
        (Path(d) / "result.json").write_text(json.dumps({"seed": 0}))
        t = time.perf_counter()
        read_ply(Path(d) / "mesh.ply")
        t_read = time.perf_counter() - t
        t = time.perf_counter()
        import_job_folder(bpy.context, d, "Bench")
        t_import = time.perf_counter() - t
    print(f"{len(v)} vertices, {len(f)} faces: read_ply {t_read * 1000:.0f} ms; "
          f"import_job_folder (read + mesh + colour attribute + vertex groups + material) {t_import:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
