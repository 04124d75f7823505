"""The back-depth smoothing of the depth-interval prior (backend/models/back_depth.py) and its card setting."""
from __future__ import annotations

import json

import pytest
import torch

from backend.models.back_depth import interior_weight, smooth_back_depth

R = 64


def _planes(front: torch.Tensor, back: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
    """Planes (1, 3, 4, R, R) whose X-Z interval channels hold the given front / back depths inside the
    silhouette and h = -0.1 outside; the other channels are random."""
    torch.manual_seed(0)
    planes = torch.randn(1, 3, 4, R, R)
    c, h = (front + back) / 2, (back - front) / 2
    planes[0, 1, 0] = torch.where(inside, c, torch.zeros_like(c))
    planes[0, 1, 1] = torch.where(inside, h, torch.full_like(h, -0.1))
    return planes


def _disc(radius: float = 26.0) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(R, dtype=torch.float32), torch.arange(R, dtype=torch.float32), indexing="ij")
    return (yy - R / 2) ** 2 + (xx - R / 2) ** 2 < radius ** 2


def _depths(planes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    c, h = planes[0, 1, 0], planes[0, 1, 1]
    return c - h, c + h


def test_a_small_relief_on_the_back_is_smoothed_and_the_front_kept():
    inside = _disc()
    front = torch.full((R, R), -0.4)
    front[30:34, 30:34] -= 0.05  # a nose on the front
    back = torch.full((R, R), 0.4)
    back[30:34, 30:34] -= 0.01  # its ghost on the back, 2 mm deep
    planes = _planes(front, back, inside)
    out = smooth_back_depth(planes, 4.0)
    new_front, new_back = _depths(out)
    assert torch.allclose(new_front[inside], front[inside], atol=1e-6)
    assert (0.4 - new_back[31, 31]) < 0.3 * 0.01  # the ghost loses over 70 % of its depth
    assert torch.equal(out[:, [0, 2]], planes[:, [0, 2]]) and torch.equal(out[:, 1, 2:], planes[:, 1, 2:])
    assert torch.equal(out[0, 1, :2][:, ~inside], planes[0, 1, :2][:, ~inside])


def test_a_large_step_and_the_outline_stay():
    inside = _disc()
    front = torch.full((R, R), -0.4)
    back = torch.full((R, R), 0.4)
    back[32:, :] = 0.2  # hair ending over the neck: a 4 cm step inside the silhouette
    back = back + 0.002 * torch.arange(R, dtype=torch.float32)[None, :]  # a gentle slope
    planes = _planes(front, back, inside)
    _, new_back = _depths(smooth_back_depth(planes, 4.0))
    assert abs(float(new_back[28, 32] - new_back[36, 32]) - 0.2) < 0.02  # the step is kept
    edge = inside & (interior_weight(inside[None, None].float(), 4.0)[0, 0] == 0)
    assert edge.any() and torch.allclose(new_back[edge], back[edge], atol=1e-6)  # no rim at the outline


def test_off_and_bad_shapes():
    planes = torch.randn(1, 3, 4, R, R)
    assert smooth_back_depth(planes, 0.0) is planes
    with pytest.raises(ValueError):
        smooth_back_depth(torch.randn(1, 2, 4, R, R), 4.0)


def test_the_card_setting_reaches_the_generator_and_bad_values_are_refused(tmp_path):
    from backend.models.loading import load_model
    from backend.weights import WeightsError
    from tests.s3d_tiny_weights import make_tiny_weights

    folder = make_tiny_weights(tmp_path / "w")
    card_path = folder / "mask2triplane_lite.json"
    card = json.loads(card_path.read_text())
    model, _ = load_model("mask2triplane", folder, "cpu")
    assert model.back_depth_sigma_px == 0.0
    card.setdefault("inference", {})["back_depth_smoothing_px"] = 6
    card_path.write_text(json.dumps(card))
    model, _ = load_model("mask2triplane", folder, "cpu")
    assert model.back_depth_sigma_px == 6.0
    for bad in (-1, 40, "six"):
        card["inference"]["back_depth_smoothing_px"] = bad
        card_path.write_text(json.dumps(card))
        with pytest.raises(WeightsError) as e:
            load_model("mask2triplane", folder, "cpu")
        assert e.value.code == "weights_mismatch" and "back_depth_smoothing_px" in str(e.value)
