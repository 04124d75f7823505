"""``s3d batch --engine ray`` (backend/batch_ray.py) on a real local Ray with two CPU workers.

One Ray session serves the module (start-up costs seconds); its workers run tests/s3d_ray_hook.py at
start (tiny weights get an ellipsoid surface; a config file can make one worker SIGKILL itself mid-job).
"""
from __future__ import annotations

import dataclasses
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from backend.cli import main
from backend.export import read_ply
from backend.models.mask2triplane import Mask2Triplane
from backend.pipeline import GenerateOptions
from s3d_tiny_weights import make_tiny_weights, sphere_query

ray = pytest.importorskip("ray", reason="the cluster extra is not installed (pip install -e '.[cluster]')")

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
FAST = ["--resolution", "64", "--views", "4", "--quiet"]


@pytest.fixture(scope="module")
def human_examples(tmp_path_factory) -> Path:
    """The human example sketches (examples/ also holds a cat one, which a human batch must not take)."""
    folder = tmp_path_factory.mktemp("examples")
    for f in sorted(EXAMPLES.glob("head_*")):
        shutil.copy(f, folder / f.name)
    return folder


@pytest.fixture(scope="module")
def hook_config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("hook") / "config.json"
    path.write_text("{}")
    return path


@pytest.fixture(scope="module")
def ray_session(hook_config):
    from backend.batch_ray import start_ray, stop_ray

    assert not ray.is_initialized()
    env = {"PYTHONPATH": f"{ROOT / 'tests'}:{ROOT}", "S3D_TEST_RAY_HOOK": str(hook_config)}
    session = start_ray(None, num_cpus=2, runtime_env={"env_vars": env,
                                                       "worker_process_setup_hook": "s3d_ray_hook.setup"})
    assert session.started and session.temp_dir and ray.cluster_resources().get("CPU") == 2
    yield session
    stop_ray(session)
    assert not ray.is_initialized() and not Path(session.temp_dir).exists()


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory):
    return make_tiny_weights(tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="module")
def ray_out(ray_session, weights_dir, hook_config, human_examples, tmp_path_factory):
    """The examples converted by the Ray engine (2 workers, 1 thread each); the log of conversions."""
    out = tmp_path_factory.mktemp("ray") / "out"
    log = out.parent / "log.txt"
    hook_config.write_text(json.dumps({"log": str(log)}))
    rc = main(["batch", str(human_examples), str(out), "--engine", "ray", "--workers", "2", "--threads", "1",
               "--weights", str(weights_dir), *FAST])
    assert rc == 0
    return out, log


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.name != "summary.json"}


def test_ray_batch_writes_the_same_files_as_the_plain_batch(ray_out, weights_dir, human_examples, tmp_path,
                                                            monkeypatch):
    out, log = ray_out
    monkeypatch.setattr(Mask2Triplane, "query", sphere_query(Mask2Triplane.query))
    threads = torch.get_num_threads()
    plain = tmp_path / "plain"
    try:
        assert main(["batch", str(human_examples), str(plain), "--workers", "1", "--threads", "1",
                     "--weights", str(weights_dir), *FAST]) == 0
    finally:
        torch.set_num_threads(threads)
    # every example (two share a stem per kind: head_front.png and head_front.json) -> its own folder
    names = sorted(p.parent.name for p in out.rglob("result.json"))
    assert names == ["head_front_json", "head_front_png", "head_long_hair_json", "head_long_hair_png"]
    assert _files(out) == _files(plain)
    for name in names:
        a, b = (read_ply((d / name / "mesh.ply").read_bytes()) for d in (out, plain))
        assert a["vertices"].shape == b["vertices"].shape and np.array_equal(a["faces"], b["faces"])
        assert np.allclose(a["vertices"], b["vertices"], atol=1e-5)
        assert np.abs(a["rgb"].astype(int) - b["rgb"].astype(int)).max() <= 2
        ra, rb = (json.loads((d / name / "result.json").read_text()) for d in (out, plain))
        assert ra["sketch_sha256"] == rb["sketch_sha256"] and ra["options"] == rb["options"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["engine"] == "ray" and summary["workers"] == 2 and summary["converted"] == 4
    assert summary["failed"] == [] and summary["retries"] == 0 and summary["skipped"] == 0
    assert sum(w["done"] for w in summary["per_worker"]) == 4 and len(summary["per_worker"]) == 2
    assert sorted(line.split()[0] for line in log.read_text().splitlines()) == \
        ["head_front.json", "head_front.png", "head_long_hair.json", "head_long_hair.png"]


def test_a_rerun_over_a_finished_out_converts_nothing(ray_out, weights_dir, human_examples, capsys):
    out, log = ray_out
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != "summary.json"}
    conversions = log.read_text()
    assert main(["batch", str(human_examples), str(out), "--engine", "ray", "--workers", "2", "--threads", "1",
                 "--weights", str(weights_dir), *FAST]) == 0
    assert "0 done" in capsys.readouterr().out
    after = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != "summary.json"}
    assert after == before and log.read_text() == conversions
    summary = json.loads((out / "summary.json").read_text())
    assert summary["converted"] == 0 and summary["skipped"] == 4 and len(summary["skipped_existing"]) == 4
    assert summary["done"] == [] and summary["per_worker"] == []


def _batch_with_hook(hook_config, config: dict, src, out, weights_dir) -> int:
    """``s3d batch --engine ray`` with two workers while the workers' test hook holds ``config``."""
    hook_config.write_text(json.dumps(config))
    try:
        return main(["batch", str(src), str(out), "--engine", "ray", "--workers", "2", "--threads", "1",
                     "--weights", str(weights_dir), *FAST])
    finally:
        hook_config.write_text("{}")


def test_a_worker_killed_mid_job_has_its_item_retried_and_nothing_half_written(ray_session, weights_dir,
                                                                              hook_config, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):  # six items: both workers stay busy around the kill
        for f in ("head_front.png", "head_long_hair.json"):
            shutil.copy(EXAMPLES / f, src / f"{i}_{f}")
    out, log, marker = tmp_path / "out", tmp_path / "log.txt", tmp_path / "killed"
    rc = _batch_with_hook(hook_config, {"log": str(log), "kill_on": "1_head_front.png", "marker": str(marker)},
                          src, out, weights_dir)
    assert marker.exists() and rc == 0  # the worker did die, and the batch still converted everything
    summary = json.loads((out / "summary.json").read_text())
    assert summary["converted"] == 6 and summary["failed"] == []
    assert summary["retries"] == 1 and summary["retried"][0]["input"].endswith("1_head_front.png")
    assert sum(w["lost"] for w in summary["per_worker"]) == 1
    assert any(len(w["pids"]) == 2 for w in summary["per_worker"])  # the restarted actor: a new process
    converted = sorted(line.split()[0] for line in log.read_text().splitlines())
    assert converted == sorted(p.name for p in src.iterdir())  # each exactly once
    for p in src.iterdir():
        dest = out / p.name.rsplit(".", 1)[0]
        result = json.loads((dest / "result.json").read_text())
        assert all((dest / f).is_file() for f in result["files"])
    leftovers = [p.name for p in out.rglob(".*")]  # no temporary job folder, no lock file
    assert leftovers == []


def test_plain_batch_skips_only_inputs_finished_with_the_same_bytes_and_options(tmp_path, weights_dir, monkeypatch):
    from backend.batch import batch_plan, finished_result

    monkeypatch.setattr(Mask2Triplane, "query", sphere_query(Mask2Triplane.query))
    threads = torch.get_num_threads()
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    shutil.copy(EXAMPLES / "head_front.json", src / "a.json")
    shutil.copy(EXAMPLES / "head_long_hair.json", src / "b.json")
    argv = ["batch", str(src), str(out), "--workers", "1", "--threads", "1", "--weights", str(weights_dir), *FAST]
    try:
        assert main(argv) == 0
        (src / "b.json").write_text((EXAMPLES / "head_front.json").read_text())  # b's content changed
        assert main(argv) == 0
        summary = json.loads((out / "summary.json").read_text())
        assert [Path(p).name for p in summary["skipped_existing"]] == ["a.json"]
        assert [Path(r["input"]).name for r in summary["done"]] == ["b.json"]
        assert main(argv[:-1] + ["--seed", "5", "--quiet"]) == 0  # other options: both redone
        assert len(json.loads((out / "summary.json").read_text())["done"]) == 2
    finally:
        torch.set_num_threads(threads)
    plan = batch_plan(src, out)
    opts = dataclasses.asdict(GenerateOptions(seed=5, resolution=64, views=4))
    assert all(finished_result(p, d, opts) for p, d in plan)
    assert not finished_result(src / "a.json", out / "missing", opts)


def test_engine_ray_without_ray_installed_is_a_coded_error(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    rc = main(["batch", str(EXAMPLES), str(tmp_path / "out"), "--engine", "ray", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "[ray_not_installed]" in err and "pip install -e '.[cluster]'" in err


def test_engine_ray_on_cuda_without_gpus_per_worker_is_a_bad_option(tmp_path, capsys):
    rc = main(["batch", str(EXAMPLES), str(tmp_path / "out"), "--engine", "ray", "--device", "cuda", "--quiet"])
    assert rc == 2 and "[bad_option]" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_a_worker_killed_after_committing_is_not_converted_twice(ray_session, weights_dir, hook_config, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        shutil.copy(EXAMPLES / "head_long_hair.json", src / f"{i}.json")
    out, log, marker = tmp_path / "out", tmp_path / "log.txt", tmp_path / "killed"
    rc = _batch_with_hook(hook_config, {"log": str(log), "kill_after": "1.json", "marker": str(marker)},
                          src, out, weights_dir)
    assert marker.exists() and rc == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["converted"] == 3 and summary["retries"] == 1
    assert [r.get("recovered", False) for r in summary["done"]] == [False, True, False]
    assert sorted(line.split()[0] for line in log.read_text().splitlines()) == ["0.json", "1.json", "2.json"]
