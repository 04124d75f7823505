"""The appearance code of named colours (backend/models/colour_code.py) and a generator that uses it."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.labels import LABEL_IDS, NUM_CLASSES
from backend.models.colour_code import ABSENT_COLOUR, CODE_DIM, colour_code, group_index, with_picks
from tests.test_training import _args, _tiny_m2t_override, fake_data  # noqa: F401  (fixture)


def _onehot(ids: np.ndarray) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.from_numpy(ids).long(), NUM_CLASSES).permute(2, 0, 1)[None].float()


def test_colour_code_is_the_mean_colour_of_each_group_and_grey_where_absent():
    ids = np.zeros((8, 8), np.int64)
    ids[:4] = LABEL_IDS["hair"]
    ids[4:, :4] = LABEL_IDS["skin"]
    ids[4:, 4:] = LABEL_IDS["nose"]  # the skin group averages skin and nose
    rgb = torch.zeros(1, 3, 8, 8)
    rgb[:, :, :4] = torch.tensor([0.8, 0.2, 0.1])[None, :, None, None]
    rgb[:, :, 4:, :4] = torch.tensor([0.6, 0.4, 0.3])[None, :, None, None]
    rgb[:, :, 4:, 4:] = torch.tensor([0.4, 0.4, 0.3])[None, :, None, None]
    code = colour_code(rgb, _onehot(ids))
    assert code.shape == (1, CODE_DIM)
    assert torch.allclose(code[0, group_index("hair")], torch.tensor([0.8, 0.2, 0.1]), atol=1e-6)
    assert torch.allclose(code[0, group_index("skin")], torch.tensor([0.5, 0.4, 0.3]), atol=1e-6)
    assert torch.all(code[0, group_index("cloth")] == ABSENT_COLOUR)
    picked = with_picks(code, {"hair": (0.1, 0.1, 0.9)})
    assert torch.allclose(picked[0, group_index("hair")], torch.tensor([0.1, 0.1, 0.9]))
    assert torch.equal(picked[0, group_index("skin")], code[0, group_index("skin")])
    with pytest.raises(KeyError):
        group_index("fur")
    with pytest.raises(ValueError):
        colour_code(rgb[:, :2], _onehot(ids))


def test_colour_generator_starts_from_a_cvae_run_and_seeds_pick_training_colours(fake_data, tmp_path):  # noqa: F811
    from backend.models.mask2triplane import Mask2Triplane
    from training.loop import RunContext
    from training.train_cli import export
    from training.train_mask2triplane import train
    from backend.models.loading import load_mask2triplane

    ctx = RunContext(torch.device("cpu"), "test")
    recipe = {"batch": 2, "points": 256, "rays_per_view": 16, "render_samples": 4, "render_importance": 4}
    cvae = tmp_path / "cvae"
    train(_args(data=str(fake_data), out=str(cvae), steps=2, config_override=_tiny_m2t_override(),
                recipe_override=recipe), ctx)
    run = tmp_path / "colours"
    cfg = {**_tiny_m2t_override(), "appearance_code": "colours", "colour_code_table": 16}
    summary = train(_args(data=str(fake_data), out=str(run), steps=2, config_override=cfg, recipe_override=recipe,
                          init_from=str(cvae / "checkpoint.pt")), ctx)
    assert summary["steps"] == 2
    ck = torch.load(run / "checkpoint.pt", weights_only=False)
    info = ck["meta"]["init_from"]
    assert info["colour_code"]["heads"] == 5 and "fresh" in info  # the 5 training heads of the fixture
    table = ck["model"]["colour_codes"]
    assert table.shape == (16, CODE_DIM) and not torch.all(table == ABSENT_COLOUR)

    export(run, tmp_path / "w", name="mask2triplane_lite")
    model, _ = load_mask2triplane(tmp_path / "w")
    assert isinstance(model, Mask2Triplane) and model.colour_mapping is not None
    assert torch.equal(model.sample_z(7), model.sample_z(7))
    codes = torch.stack([model.sample_colour_code(s)[0] for s in range(12)])
    assert all(any(torch.equal(c, row) for row in model.colour_codes) for c in codes)  # drawn from the table
    assert len({tuple(c.tolist()) for c in codes}) > 1
    z_pick = model.z_from_colours(with_picks(model.sample_colour_code(7), {"hair": (0.0, 0.0, 1.0)}))
    assert not torch.allclose(z_pick, model.sample_z(7))


def test_colour_albedo_rows_follow_the_code_rows_and_the_check_refuses_other_heads(fake_data, tmp_path):  # noqa: F811
    from backend.models.colour_code import group_index as gi
    from backend.models.loading import load_mask2triplane
    from training.colour_code_fit import write_colour_albedo
    from training.loop import RunContext
    from training.train_cli import export
    from training.train_mask2triplane import train

    ctx = RunContext(torch.device("cpu"), "test")
    recipe = {"batch": 2, "points": 256, "rays_per_view": 16, "render_samples": 4, "render_importance": 4}
    run = tmp_path / "colours"
    cfg = {**_tiny_m2t_override(), "appearance_code": "colours", "colour_code_table": 8}
    train(_args(data=str(fake_data), out=str(run), steps=1, config_override=cfg, recipe_override=recipe), ctx)
    export(run, tmp_path / "w", name="mask2triplane_lite")
    with pytest.raises(RuntimeError, match="differ from the table"):
        write_colour_albedo(tmp_path / "w", fake_data, None, "test", tolerance=-1.0)
    summary = write_colour_albedo(tmp_path / "w", fake_data, None, "test")
    assert summary["heads"] == 5 and summary["max_code_difference"] <= 2e-3
    model, card = load_mask2triplane(tmp_path / "w")
    assert len(card["inference"]["colour_albedo"]) == 8
    from backend.export import read_ply

    mesh = read_ply((fake_data / "s000003" / "mesh.ply").read_bytes())  # every fixture head: one grey, hair on top
    hair = torch.from_numpy(mesh["rgb"][mesh["label"] == LABEL_IDS["hair"]].mean(0) / 255.0).float()
    for seed in range(6):
        albedo = model.sample_colour_albedo(seed)[0]
        assert torch.allclose(albedo[gi("hair")], hair, atol=1e-4)
        assert not torch.allclose(albedo[gi("hair")], model.sample_colour_code(seed)[0, gi("hair")], atol=1e-2)
        assert torch.all(albedo[gi("cloth")] == ABSENT_COLOUR)
    with pytest.raises(ValueError):
        model.set_colour_albedo(torch.zeros(3, CODE_DIM))
