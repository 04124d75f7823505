"""``s3d bench`` on tiny random weights (with the analytic ellipsoid surface) at resolution 64.

The Blender import row runs bpy in a subprocess (never in this process, which holds torch); where bpy is
not installed those checks expect the "bpy not installed" note instead.
"""
from __future__ import annotations

import importlib.util
import json
import sys

import numpy as np
import pytest
import torch

from backend import bench, bench_blender
from backend.bench import main
from backend.models.mask2triplane import Mask2Triplane
from backend.pipeline import STAGES
from s3d_tiny_weights import make_tiny_weights, sphere_query


HAS_BPY = importlib.util.find_spec("bpy") is not None
ROOT = bench.ROOT
sys.path.insert(0, str(ROOT))


def _tiny_bench(tmp_path, monkeypatch, *extra):
    monkeypatch.setattr(Mask2Triplane, "query", sphere_query(Mask2Triplane.query))
    old = torch.get_num_threads()
    weights = make_tiny_weights(tmp_path / "w")
    out = tmp_path / "bench.json"
    try:
        rc = main(["--resolutions", "64", "--repeats", "1", "--threads", "1", "--views", "4",
                   "--naive-blocks", "1", "--weights", str(weights), "--json", str(out), *extra])
    finally:
        torch.set_num_threads(old)
    assert rc == 0
    return json.loads(out.read_text())


def _no_bpy(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a, **k: None if name == "bpy" else real(name, *a, **k))


def test_bench_json_has_every_stage_positive_times_and_matmul_rate(tmp_path, monkeypatch, capsys):
    rep = _tiny_bench(tmp_path, monkeypatch, "--blender-repeats", "2")
    assert rep["matmul_gflops"] > 0 and rep["peak_rss_mb"] > 0 and rep["threads"] == 1
    (r,) = rep["resolutions"]
    assert r["resolution"] == 64
    for stage, _share in STAGES:
        assert stage in r["median_s"], stage
        if stage != "load_models":  # models are loaded once, outside the timed jobs
            assert r["median_s"][stage] > 0, stage
    for stage in ("sketch_to_mask", "planes", "density_grid", "vertex_colors"):
        assert r["flops"][stage] > 0 and r["time_over_floor"][stage] > 0, stage
    assert 0 < r["grid_points_evaluated"] <= r["grid_points_dense"] == 65 ** 3
    assert r["naive_baseline"]["speed_ratio"] > 0
    # the Blender import of the mesh this bench generated: a separate row, not in the job total
    b = r["blender_import"]
    text = capsys.readouterr().out
    row = next(ln for ln in text.splitlines() if ln.startswith("blender_import"))
    if HAS_BPY:
        assert b["median_s"] > 0 and len(b["import_s"]) == b["repeats"] == 2, b
        assert b["vertices"] == r["vertices"] and b["faces"] == r["faces"]
        assert f"{b['median_s']:.3f}" in row and "not in the total" in row
    else:
        assert b == {"skipped": "bpy not installed"} and "bpy not installed" in row
    assert "blender_import" not in r["median_s"]


def test_bench_without_bpy_or_with_no_blender_says_so(tmp_path, monkeypatch, capsys):
    real_run = bench_blender.subprocess.run

    def run(cmd, *a, **k):
        assert str(bench_blender.BLENDER_SCRIPT) not in map(str, cmd), "no Blender subprocess may run"
        return real_run(cmd, *a, **k)

    monkeypatch.setattr(bench_blender.subprocess, "run", run)
    _no_bpy(monkeypatch)
    assert bench_blender.blender_import_time(tmp_path) == {"skipped": "bpy not installed"}
    assert bench_blender.format_blender_row({"skipped": "bpy not installed"}).split() == ["blender_import", "-", "bpy",
                                                                                  "not", "installed"]
    monkeypatch.undo()
    rep = _tiny_bench(tmp_path, monkeypatch, "--no-blender")
    assert rep["resolutions"][0]["blender_import"] == {"skipped": "--no-blender"}
    assert "blender_import           -  --no-blender" in capsys.readouterr().out


def _ico_job(folder):
    import trimesh

    from ply_files import write_ply

    folder.mkdir(parents=True)
    s = trimesh.creation.icosphere(subdivisions=2, radius=0.1)
    v, f = np.asarray(s.vertices, np.float32), np.asarray(s.faces, np.int32)
    write_ply(folder / "mesh.ply", v, f, np.full((len(v), 3), 200, np.uint8), (np.arange(len(v)) % 3 + 1).astype(np.uint8))
    (folder / "result.json").write_text(json.dumps({"seed": 0}))
    return len(v), len(f)


@pytest.mark.skipif(not HAS_BPY, reason="bpy not installed")
def test_blender_import_time_on_a_tiny_job_and_a_failure(tmp_path):
    n_v, n_f = _ico_job(tmp_path / "job")
    b = bench_blender.blender_import_time(tmp_path / "job", repeats=2)
    assert b["median_s"] > 0 and b["read_ply_median_s"] > 0 and len(b["import_s"]) == 2
    assert (b["vertices"], b["faces"]) == (n_v, n_f) and b["bpy_version"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(RuntimeError, match=r"exit 1.*mesh\.ply"):
        bench_blender.blender_import_time(tmp_path / "empty", repeats=1)


def test_bench_rejects_bad_resolution(capsys):
    assert main(["--resolutions", "100", "--repeats", "1"]) == 2
    assert "resolution" in capsys.readouterr().err


def _make_sheet_module():
    spec = importlib.util.spec_from_file_location("make_sheet", ROOT / "benchmarks" / "make_sheet.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_make_sheet_blender_column_reuses_a_fresh_render_and_fails_loudly(tmp_path, monkeypatch):
    from PIL import Image

    ms = _make_sheet_module()
    calls, real_run = [], ms.subprocess.run

    def run(cmd, *a, **k):  # only the render is refused; other subprocesses (numpy's lscpu) pass
        if str(ms.RENDER_SCRIPT) in map(str, cmd):
            calls.append(cmd)
            raise AssertionError("no render expected")
        return real_run(cmd, *a, **k)

    monkeypatch.setattr(ms.subprocess, "run", run)
    _ico_job(tmp_path / "job")
    Image.new("RGB", (64, 64), (255, 0, 0)).save(tmp_path / "job" / "blender.png")  # newer than mesh.ply
    assert ms.main([str(tmp_path / "job"), "--out", str(tmp_path / "s.png"), "--tile", "32", "--blender"]) == 0
    sheet = np.asarray(Image.open(tmp_path / "s.png"))
    assert sheet.shape == (32, 9 * 32, 3) and not calls
    assert (sheet[:, 8 * 32:] == [255, 0, 0]).all()           # the Blender column, last
    assert (sheet[:, 2 * 32:8 * 32] == 255).all()              # no previews in this job folder: white tiles
    (tmp_path / "nomesh").mkdir()
    assert ms.main([str(tmp_path / "nomesh"), "--out", str(tmp_path / "t.png"), "--blender"]) == 1
    assert not (tmp_path / "t.png").exists()


def test_check_real_sketches_tells_an_enclosed_cavity_from_a_floater():
    import trimesh

    spec = importlib.util.spec_from_file_location("check_real_sketches", ROOT / "benchmarks" / "check_real_sketches.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    head = trimesh.creation.icosphere(subdivisions=3, radius=1.0)
    cavity = trimesh.creation.icosphere(subdivisions=2, radius=0.3)  # inside the head
    floater = trimesh.creation.icosphere(subdivisions=1, radius=0.2)
    floater.apply_translation([2.5, 0.0, 0.0])  # beside it
    both = trimesh.util.concatenate([head, cavity, floater])
    pieces = mod.classify_pieces(np.asarray(both.vertices), np.asarray(both.faces))
    total = len(both.faces)
    assert [p["enclosed"] for p in pieces] == [True, False]
    assert pieces[0]["face_fraction"] == pytest.approx(len(cavity.faces) / total)
    assert pieces[1]["face_fraction"] == pytest.approx(len(floater.faces) / total)
    assert mod.classify_pieces(np.asarray(head.vertices), np.asarray(head.faces)) == []


def test_retrieval_baseline_finds_the_nearest_mask_and_scores_its_mesh(tmp_path):
    from test_training import write_fake_synhead

    spec = importlib.util.spec_from_file_location("retrieval_baseline", ROOT / "benchmarks" / "retrieval_baseline.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    bank = np.array([[0, 0, 1, 1], [0, 1, 1, 1], [2, 2, 2, 2]], np.uint8)
    order, agreement = mod.nearest_masks(np.array([0, 1, 1, 1], np.uint8), bank, 2)
    assert order.tolist() == [1, 0] and agreement.tolist() == [1.0, 0.75]

    data = write_fake_synhead(tmp_path / "synhead", [0, 1, 5, 6, 7])
    out = tmp_path / "retrieval.json"
    assert mod.main(["--data", str(data), "--limit", "2", "--k", "3", "--mask-resolution", "16",
                     "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["count"] == 2 and len(report["per_head"]) == 2
    for row in report["per_head"]:
        assert row["top1_seed"] in (5, 6, 7) and 0 <= row["top1_agreement"] <= 1
        assert 0 < row["best_of_k_chamfer_mm"] <= row["top1_chamfer_mm"] < float("inf")
    assert report["mean_top1_chamfer_mm"] == pytest.approx(np.mean([r["top1_chamfer_mm"] for r in report["per_head"]]))
    with pytest.raises(SystemExit):
        mod.main(["--data", str(data), "--k", "0"])


def test_bench_draft_case_times_the_live_preview_job(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(Mask2Triplane, "query", sphere_query(Mask2Triplane.query))
    old = torch.get_num_threads()
    weights = make_tiny_weights(tmp_path / "w")
    out = tmp_path / "draft.json"
    calls = []
    real = bench.bench_resolution
    monkeypatch.setattr(bench, "bench_resolution", lambda *a, **k: calls.append(a) or real(*a, **k))
    try:
        rc = main(["--draft", "--repeats", "2", "--threads", "1", "--weights", str(weights), "--json", str(out)])
    finally:
        torch.set_num_threads(old)
    assert rc == 0 and not calls  # only the draft case runs
    rep = json.loads(out.read_text())
    assert rep["case"] == "draft" and rep["options"] == bench.DRAFT_OPTIONS and rep["threads"] == 1
    assert len(rep["wall_s"]) == 2 and all(w > 0 for w in rep["wall_s"])
    assert rep["min_s"] <= rep["median_s"] <= rep["max_s"]
    assert len(rep["cpu_s"]) == 2 and rep["cpu_median_s"] > 0
    # the wall time is taken around the whole job: not less than its stages (medians, so give or take)
    assert rep["median_s"] >= 0.8 * sum(v for k, v in rep["stage_median_s"].items() if k != "load_models")
    assert rep["vertices"] > 0
    text = capsys.readouterr().out
    assert text.startswith(f"draft job (live preview): wall median {rep['median_s']:.3f} s")
    assert f"CPU time median {rep['cpu_median_s']:.3f} s" in text
    assert "resolution 64, 4 colour views at 48 px" in text
    assert main(["--draft", "--repeats", "0"]) == 2
