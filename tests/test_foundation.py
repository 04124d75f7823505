"""Foundation: every package imports, `s3d info` tells the truth, the add-on never imports torch."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("module", ["backend", "backend.coords", "backend.labels", "backend.weights",
                                    "backend.device", "backend.cli", "training", "blender_addon"])
def test_package_imports(module):
    __import__(module)


def test_info_subprocess_reports_device_and_weights(tmp_path):
    out = subprocess.run([sys.executable, "-m", "backend.cli", "info", "--json"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120, check=True).stdout
    info = json.loads(out)
    import torch

    assert info["versions"]["torch"] == torch.__version__
    assert info["device"] == ("cuda" if torch.cuda.is_available() else "cpu")
    assert info["device_reason"]
    assert isinstance(info["weights"], dict)


def test_info_detects_corrupted_weights(tmp_path):
    import torch
    from backend.weights import save_weights

    save_weights({"w": torch.ones(3)}, {"kind": "test"}, "tiny", tmp_path)
    ok = json.loads(subprocess.run([sys.executable, "-m", "backend.cli", "info", "--json", "--weights", str(tmp_path)],
                                   cwd=ROOT, capture_output=True, text=True, timeout=120, check=True).stdout)
    assert ok["weights"]["tiny"]["ok"] is True
    data = bytearray((tmp_path / "tiny.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (tmp_path / "tiny.safetensors").write_bytes(bytes(data))
    bad = json.loads(subprocess.run([sys.executable, "-m", "backend.cli", "info", "--json", "--weights", str(tmp_path)],
                                    cwd=ROOT, capture_output=True, text=True, timeout=120, check=True).stdout)
    assert bad["weights"]["tiny"]["ok"] is False
    assert "tiny.safetensors" in bad["weights"]["tiny"]["error"]


def test_addon_import_does_not_pull_torch():
    code = ("import sys, importlib, pkgutil, blender_addon\n"
            "for m in pkgutil.walk_packages(blender_addon.__path__, 'blender_addon.'):\n"
            "    try:\n        importlib.import_module(m.name)\n"
            "    except ImportError as e:\n        if 'bpy' not in str(e): raise\n"
            "assert 'torch' not in sys.modules, 'the add-on imported torch'\nprint('ok')")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("ok")
