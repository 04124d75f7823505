"""The Blender batch (blender_addon/batch.py, the bpy module as Blender) with ``--engine ray``: the sketches
go to one ``s3d batch --engine ray`` run of the backend's Python, and the heads come back into .blend files.

The backend 'Python' is a shim that starts a local Ray whose workers run tests/s3d_ray_hook.py (the tiny
weights get an ellipsoid surface) and then runs ``backend.cli``; it records its arguments.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from s3d_tiny_weights import make_tiny_weights

pytest.importorskip("ray", reason="the cluster extra is not installed (pip install -e '.[cluster]')")
if importlib.util.find_spec("bpy") is None:
    pytest.skip("the bpy module is not installed", allow_module_level=True)

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"

SHIM = """import json, sys
sys.path[:0] = [{tests!r}, {root!r}]
args = sys.argv[1:]
assert args[:2] == ["-m", "backend.cli"], args
open({argv_log!r}, "w").write(json.dumps(args[2:]))
from backend.batch_ray import start_ray, stop_ray
session = start_ray(None, num_cpus=2, runtime_env={{"env_vars": {{"PYTHONPATH": {tests!r} + ":" + {root!r}}},
                                                   "worker_process_setup_hook": "s3d_ray_hook.setup"}})
try:
    from backend.cli import main
    rc = main(args[2:])
finally:
    stop_ray(session)
sys.exit(rc)
"""


def test_blender_batch_forwards_engine_ray_and_imports_every_head(tmp_path):
    weights = make_tiny_weights(tmp_path / "weights")
    argv_log = tmp_path / "argv.json"
    (tmp_path / "shim.py").write_text(SHIM.format(tests=str(TESTS), root=str(ROOT), argv_log=str(argv_log)))
    shim = tmp_path / "backend_python"
    shim.write_text(f"#!/bin/sh\nexec {sys.executable} {tmp_path / 'shim.py'} \"$@\"\n")
    shim.chmod(0o755)
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    for name in ("head_front.png", "head_long_hair.png"):
        shutil.copy(ROOT / "examples" / name, src / name)
    env = dict(os.environ)
    for key in ("BLENDER_USER_CONFIG", "BLENDER_USER_SCRIPTS", "BLENDER_USER_EXTENSIONS", "BLENDER_USER_DATAFILES"):
        env[key] = str(tmp_path / "blender" / key.lower())
    env.pop("S3D_BACKEND_PYTHON", None)
    env.pop("RAY_ADDRESS", None)
    cmd = [sys.executable, str(ROOT / "blender_addon" / "batch.py"), "--", str(src), str(out), "--engine", "ray",
           "--workers", "2", "--backend-python", str(shim), "--weights-dir", str(weights), "--resolution", "64",
           "--views", "4", "--seed", "5"]
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    forwarded = json.loads(argv_log.read_text())
    assert forwarded[:3] == ["batch", str(out / ".s3d-ray-inputs"), str(out)]
    assert ["--engine", "ray"] == forwarded[3:5] and "--workers" in forwarded and "--seed" in forwarded
    summary = json.loads((out / "batch_summary.json").read_text())
    assert summary["engine"] == "ray" and not summary["failed"]
    assert sorted(c["name"] for c in summary["converted"]) == ["head_front", "head_long_hair"]
    assert all(c["vertices"] > 100 and c["blend"].endswith(".blend") for c in summary["converted"])
    for name in ("head_front", "head_long_hair"):
        assert (out / f"{name}.blend").is_file() and (out / name / "mesh.ply").is_file()
        assert json.loads((out / name / "result.json").read_text())["seed"] == 5
    ray_summary = json.loads((out / "summary.json").read_text())  # the backend's own summary
    assert ray_summary["engine"] == "ray" and ray_summary["converted"] == 2
    assert not (out / ".s3d-ray-inputs").exists()
