"""``s3d bench`` on tiny random weights (with the analytic ellipsoid surface) at resolution 64."""
from __future__ import annotations

import json

import pytest
import torch

from backend.bench import main
from backend.models.mask2triplane import Mask2Triplane
from backend.pipeline import STAGES
from s3d_tiny_weights import make_tiny_weights, sphere_query


def test_bench_json_has_every_stage_positive_times_and_matmul_rate(tmp_path, monkeypatch):
    monkeypatch.setattr(Mask2Triplane, "query", sphere_query(Mask2Triplane.query))
    old = torch.get_num_threads()
    weights = make_tiny_weights(tmp_path / "w")
    out = tmp_path / "bench.json"
    try:
        rc = main(["--resolutions", "64", "--repeats", "1", "--threads", "1", "--views", "4",
                   "--naive-blocks", "1", "--weights", str(weights), "--json", str(out)])
    finally:
        torch.set_num_threads(old)
    assert rc == 0
    rep = json.loads(out.read_text())
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


def test_bench_rejects_bad_resolution(capsys):
    assert main(["--resolutions", "100", "--repeats", "1"]) == 2
    assert "resolution" in capsys.readouterr().err
