"""training/compact.py: the small float16 warm-restart checkpoint of a run."""
from __future__ import annotations

import torch

from tests.test_training import _args, _tiny_m2t_override, fake_data  # noqa: F401  (fixture)


def test_compact_checkpoint_is_float16_and_warm_starts_the_same_network(fake_data, tmp_path):  # noqa: F811
    from backend.models.mask2triplane import Mask2Triplane
    from training.compact import compact_checkpoint
    from training.loop import RunContext, inference_state, load_checkpoint, warm_start
    from training.train_mask2triplane import train

    run = tmp_path / "run"
    train(_args(data=str(fake_data), out=str(run), steps=2, config_override=_tiny_m2t_override(),
                recipe_override={"batch": 2, "points": 256, "rays_per_view": 16, "render_samples": 4,
                                 "render_importance": 4, "ema_decay": 0.9}), RunContext(torch.device("cpu"), "test"))
    full = load_checkpoint(run / "checkpoint.pt")
    info = compact_checkpoint(run, tmp_path / "small.pt")
    small = torch.load(tmp_path / "small.pt", weights_only=False)
    assert info["step"] == 2 and "optimizer" not in small
    assert all(v.dtype == torch.float16 for v in small["model"].values() if v.is_floating_point())
    assert info["bytes"] < 0.6 * (run / "checkpoint.pt").stat().st_size
    model = Mask2Triplane(full["meta"]["config"])
    warm_start(model, tmp_path / "small.pt", "mask2triplane")
    for k, v in inference_state(full).items():  # the moving average, to float16 precision
        assert torch.allclose(model.state_dict()[k].float(), v.float(), rtol=2e-3, atol=1e-4), k
