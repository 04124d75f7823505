"""The Blender-import row of ``s3d bench`` (backend/bench.py): the add-on's import of a job folder the
bench generated, timed under bpy in a subprocess (``scripts/bench_addon_import.py``), never importing bpy
into the process that holds torch; without bpy the row says "bpy not installed".
"""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BLENDER_SCRIPT = ROOT / "scripts" / "bench_addon_import.py"
NO_BPY = "bpy not installed"


def bpy_available() -> bool:
    """True when ``bpy`` can be imported by this Python (``importlib.util.find_spec``; bpy is not imported)."""
    return importlib.util.find_spec("bpy") is not None


def blender_import_time(job_dir: str | Path, repeats: int = 3, timeout: float = 600.0) -> dict:
    """Time the add-on's import of a job folder under bpy, in a subprocess.

    Runs ``sys.executable scripts/bench_addon_import.py --job-dir JOB_DIR --repeats N --json``: each repeat
    imports ``mesh.ply`` + ``result.json`` with ``blender_addon.scene.importer.import_job_folder`` into an empty
    factory scene.

    Args:
        job_dir: a job folder of ``s3d generate`` (``mesh.ply``, ``result.json``).
        repeats: imports (>= 1); the median is reported.
        timeout: seconds before the subprocess is killed.

    Returns:
        ``{"median_s", "import_s" (list), "read_ply_median_s", "vertices", "faces", "repeats", "bpy_version",
        "job_dir"}`` (seconds), or ``{"skipped": "bpy not installed"}`` when bpy is not importable.

    Raises:
        RuntimeError: the subprocess failed, timed out or printed no JSON (the message has its stderr tail).
    """
    if not bpy_available():
        return {"skipped": NO_BPY}
    cmd = [sys.executable, str(BLENDER_SCRIPT), "--job-dir", str(job_dir), "--repeats", str(int(repeats)), "--json"]
    try:
        r = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired as e:
        raise RuntimeError(f"Blender import timed out after {timeout:.0f} s") from e
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    if r.returncode != 0 or not lines:
        tail = (r.stderr.strip() or r.stdout.strip())[-500:]
        raise RuntimeError(f"Blender import failed (exit {r.returncode}): {tail}")
    return json.loads(lines[-1])


def format_blender_row(b: dict) -> str:
    """The ``blender_import`` row of the text report (not part of the job total)."""
    if "median_s" in b:
        return (f"{'blender_import':<16}{b['median_s']:>10.3f}  not in the total: add-on import_job_folder into an "
                f"empty scene, bpy {b['bpy_version']}, median of {b['repeats']}")
    if "skipped" in b:
        return f"{'blender_import':<16}{'-':>10}  {b['skipped']}"
    err = " ".join(str(b.get("error", "unknown")).split())
    return f"{'blender_import':<16}{'-':>10}  {err[:300]}"
