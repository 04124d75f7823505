"""Adversarial training (training/adversarial.py, training/patches.py), the fitted appearance prior
(training/prior_fit.py) and the appearance figures (training/appearance_eval.py)."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from test_training import _args, _head_params, _tiny_m2t_override, write_fake_synhead

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def fake_data(tmp_path_factory):
    return write_fake_synhead(tmp_path_factory.mktemp("synhead_adv"), list(range(8)))


# ---- discriminator and losses -------------------------------------------------------------------------

def test_patch_discriminator_gives_one_logit_per_patch_and_checks_shapes():
    from training.adversarial import IMAGE_CHANNELS, PatchDiscriminator

    d = PatchDiscriminator(IMAGE_CHANNELS, 19, patch_size=32)
    logits = d(torch.randn(3, IMAGE_CHANNELS, 32, 32), torch.rand(3, 19, 32, 32))
    assert logits.shape == (3,) and torch.isfinite(logits).all()
    assert PatchDiscriminator(IMAGE_CHANNELS, 19, patch_size=8)(torch.randn(1, 6, 8, 8), torch.rand(1, 19, 8, 8)).shape == (1,)
    with pytest.raises(ValueError, match="power of two"):
        PatchDiscriminator(IMAGE_CHANNELS, 19, patch_size=24)
    with pytest.raises(ValueError, match="expected image"):
        d(torch.randn(3, IMAGE_CHANNELS, 16, 16), torch.rand(3, 19, 16, 16))


def test_r1_penalty_of_a_linear_discriminator_is_its_squared_weight_norm():
    from training.adversarial import r1_penalty

    w = torch.randn(1, 2, 4, 4)
    x = torch.randn(5, 2, 4, 4, requires_grad=True)
    logits = (x * w).sum(dim=(1, 2, 3)) + 0.3 * x.detach().sum()  # the gradient is w for every sample
    assert float(r1_penalty(logits, x)) == pytest.approx(float(w.pow(2).sum()), rel=1e-5)
    # a quadratic one: D(x) = sum x^2 / 2 has gradient x, the penalty is the mean squared norm of x
    y = torch.randn(4, 1, 2, 2, requires_grad=True)
    assert float(r1_penalty((y ** 2).sum(dim=(1, 2, 3)) / 2, y).detach()) == pytest.approx(float(y.detach().pow(2).sum() / 4), rel=1e-5)


def test_logistic_losses_prefer_the_right_answer():
    from training.adversarial import discriminator_loss, generator_loss

    good, bad = torch.tensor([5.0, 5.0]), torch.tensor([-5.0, -5.0])
    assert float(discriminator_loss(good, bad)) < 0.02 < float(discriminator_loss(bad, good))
    assert float(generator_loss(good)) < 0.01 < float(generator_loss(bad))
    assert float(generator_loss(torch.zeros(3))) == pytest.approx(np.log(2.0))


def test_depth_normals_of_planes_and_silhouettes():
    from training.adversarial import depth_normals

    k, spacing = 9, 0.01
    cols = torch.arange(k, dtype=torch.float32)
    tilted = (0.5 * spacing * cols)[None, None, :].expand(1, k, k)  # depth grows 0.5 per unit to the right
    flat = torch.full((1, k, k), 0.2)
    alpha = torch.ones(1, k, k)
    n = depth_normals(torch.cat([tilted, flat]), torch.cat([alpha, alpha]), torch.tensor([spacing, spacing]))
    expected = torch.tensor([0.5, 0.0, 1.0]) / np.sqrt(1.25)
    assert torch.allclose(n[0, :, 1:-1, 1:-1].permute(1, 2, 0), expected.expand(k - 2, k - 2, 3), atol=1e-5)
    assert torch.allclose(n[1, :, 4, 4], torch.tensor([0.0, 0.0, 1.0]))
    # uncovered pixels and the ring next to them have no normal
    hole = alpha.clone()
    hole[0, 4, 4] = 0.0
    nh = depth_normals(flat, hole, torch.tensor([spacing]))
    assert nh[0, :, 3:6, 3:6].abs().sum() == 0 and nh[0, :, 1, 1].norm() == pytest.approx(1.0)


# ---- patches ------------------------------------------------------------------------------------------

def test_a_whole_view_patch_matches_the_view_and_its_rays_hit_the_head(fake_data):
    from backend.models.renderer import VolumeRenderer
    from training.datasets import SynHead, read_grey

    data = SynHead(fake_data, "train")
    p = data.view_patch(0, np.random.default_rng(0), 16, 1.0, views=("front",))
    assert p["patch_rgb"].shape == (3, 16, 16) and p["patch_label"].shape == (19, 16, 16)
    assert p["patch_ray_o"].shape == (256, 3) and np.allclose(p["patch_label"].sum(0), 1.0, atol=1e-5)
    # scale 1 = the whole view, area-averaged from 32 to 16 pixels
    alpha = read_grey(data.samples[0].root / data.samples[0].entry["views"][0]["alpha"])
    assert np.abs(p["patch_alpha"] - alpha.reshape(16, 2, 16, 2).mean((1, 3))).max() < 1e-4
    assert p["patch_spacing"] == pytest.approx(0.4 / 16)
    # an opaque ellipsoid where the patch is covered: the patch's rays hit it at the patch's depth
    a, b, c = _head_params(data.samples[0].seed)["radii"]

    def ellipsoid(x):
        inside = ((x / torch.tensor([a, b, c], dtype=torch.float32)) ** 2).sum(-1, keepdim=True) < 1
        return {"sigma": inside.float() * 1e4, "rgb": torch.zeros(*x.shape[:-1], 3), "semantic": torch.zeros(*x.shape[:-1], 19)}

    img = VolumeRenderer(64, 64).render_rays(ellipsoid, torch.from_numpy(p["patch_ray_o"])[None],
                                             torch.from_numpy(p["patch_ray_d"])[None], torch.from_numpy(p["patch_ray_fwd"])[None])
    inner = p["patch_alpha"].reshape(-1) > 0.99
    assert np.abs(img["alpha"][0].numpy()[inner] - 1).max() < 1e-3
    assert np.abs(img["depth"][0].numpy()[inner] - p["patch_depth"].reshape(-1)[inner]).max() < 0.01  # metres


def test_small_patches_stay_inside_the_view(fake_data):
    from training.datasets import SynHead

    data = SynHead(fake_data, "train")
    rng = np.random.default_rng(1)
    for _ in range(20):
        p = data.view_patch(1, rng, 8, 0.25)
        o = p["patch_ray_o"]
        # every ray starts on a face of the box (|coordinate| = 1 along the viewing axis, inside on the others)
        assert np.all(np.abs(o) <= 1.0 + 1e-5) and np.all(np.isclose(np.abs(o).max(1), 1.0, atol=1e-5))
        assert 0.25 * 0.4 / 8 - 1e-6 <= p["patch_spacing"] <= 0.4 / 8 + 1e-6
    with pytest.raises(ValueError, match="min_scale"):
        data.view_patch(1, rng, 8, 0.0)


# ---- adversarial training -----------------------------------------------------------------------------

ADV_RECIPE = {"batch": 2, "points": 256, "rays_per_view": 16, "render_samples": 4, "render_importance": 4,
              "adv_weight": 0.5, "adv_patch": 8, "adv_min_scale": 0.5, "adv_ramp_steps": 1, "adv_r1_interval": 2}


def test_adversarial_steps_train_both_players_and_resume_the_game(fake_data, tmp_path):
    from training.loop import RunContext, load_checkpoint
    from training.train_mask2triplane import train

    ctx = RunContext(torch.device("cpu"), "test")
    out = tmp_path / "adv"
    torch.manual_seed(0)
    args = _args(data=str(fake_data), out=str(out), steps=4, config_override=_tiny_m2t_override(),
                 recipe_override=ADV_RECIPE)
    train(args, ctx)
    ck = load_checkpoint(out / "checkpoint.pt")
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert all("g_adv" in r and "d_loss" in r for r in rows) and any("r1" in r for r in rows)
    d_state = ck["auxiliary"]["discriminator"]
    # the discriminator moved away from its initialisation (same seed, same construction order)
    from training.adversarial import IMAGE_CHANNELS, PatchDiscriminator

    torch.manual_seed(0)
    from backend.models.config import get_config
    from backend.models.mask2triplane import Mask2Triplane

    Mask2Triplane({**get_config("lite", "mask2triplane"), **_tiny_m2t_override()})
    fresh = PatchDiscriminator(IMAGE_CHANNELS, 19, 8).state_dict()
    assert any(not torch.equal(fresh[k], v) for k, v in d_state.items())
    assert ck["auxiliary"]["optimizer"]["state"]  # Adam moments kept for the resume

    # the generator's adversarial term reaches its weights: one step with only that loss changes them
    train(replace(args, steps=6, resume=True), ctx)
    ck2 = load_checkpoint(out / "checkpoint.pt")
    assert ck2["step"] == 6 and any(not torch.equal(d_state[k], v) for k, v in ck2["auxiliary"]["discriminator"].items())

    # a compacted warm restart keeps the discriminator's weights (float16), and a warm start reads them back
    from training.adversarial import AdversarialStep, warm_start_discriminator
    from training.compact import compact_checkpoint

    small = tmp_path / "small.pt"
    compact_checkpoint(out, small)
    saved = torch.load(small, weights_only=False)["discriminator"]
    d_now = ck2["auxiliary"]["discriminator"]
    step = AdversarialStep(19, 8)
    assert warm_start_discriminator(step, str(small))
    for k, v in step.discriminator.state_dict().items():
        assert saved[k].dtype == torch.float16 and torch.allclose(v, d_now[k], rtol=1e-2, atol=1e-3)
    assert not warm_start_discriminator(AdversarialStep(19, 16), str(small))  # another patch size: left as is
    assert not warm_start_discriminator(step, str(tmp_path / "missing.pt"))
    # the trainer does it on --init-from (and records it in the card's init_from)
    warm = tmp_path / "warm"
    train(replace(args, out=str(warm), steps=1, init_from=str(small)), ctx)
    assert load_checkpoint(warm / "checkpoint.pt")["meta"]["init_from"]["discriminator"] is True


def test_the_adversarial_term_alone_moves_density_and_colour(fake_data):
    from backend.models.config import get_config
    from backend.models.mask2triplane import Mask2Triplane
    from training.datasets import SynHead
    from training.train_mask2triplane import Mask2TriplaneLoss, Mask2TriplaneRecipe, make_batch_fn

    cfg = {**get_config("lite", "mask2triplane"), **_tiny_m2t_override()}
    recipe = Mask2TriplaneRecipe(**{**ADV_RECIPE, "w_occ": 0, "w_point_rgb": 0, "w_point_sem": 0, "kl_weight": 0,
                                    "w_ray_rgb": 0, "w_ray_alpha": 0, "w_ray_depth": 0, "w_ray_sem": 0, "w_interval": 0})
    torch.manual_seed(0)
    model = Mask2Triplane(cfg)
    lm = Mask2TriplaneLoss(model, recipe)
    batch = make_batch_fn(SynHead(fake_data, "train"), cfg, recipe, torch.device("cpu"))(np.random.default_rng(0))
    batch["step"] = 10
    terms = lm(batch)
    terms["loss"].backward()
    assert float(terms["g_adv"].detach()) > 0
    assert model.decoder.out.weight.grad[0].abs().sum() > 0  # occupancy row: geometry the loss can see
    assert model.decoder.out.weight.grad[1:4].abs().sum() > 0  # colour rows
    assert all(p.grad is None for p in lm.adversarial.discriminator.parameters())  # D is not trained by G's loss
    assert lm.after_step(0)["d_loss"] > 0 and lm.after_step(1) == {}  # one update per generator step

    # with adv_prior_z the patches are rendered from a prior code: the appearance encoder gets no gradient
    # from the adversarial term (it does with the posterior code above), the appearance mapping does
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.appearance_encoder.parameters())
    model.zero_grad()
    lm_prior = Mask2TriplaneLoss(model, Mask2TriplaneRecipe(**{**vars(recipe), "adv_prior_z": True}))
    lm_prior(batch)["loss"].backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.appearance_encoder.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.mask_encoder.appearance_mapping.parameters())


def test_the_colour_code_joins_the_discriminator_condition(fake_data):
    from backend.models.colour_code import CODE_DIM
    from backend.models.config import get_config
    from backend.models.mask2triplane import Mask2Triplane
    from training.datasets import SynHead
    from training.train_mask2triplane import Mask2TriplaneLoss, Mask2TriplaneRecipe, make_batch_fn

    cfg = {**get_config("lite", "mask2triplane"), **_tiny_m2t_override(), "appearance_code": "colours"}
    recipe = Mask2TriplaneRecipe(**{**ADV_RECIPE, "adv_code_condition": True})
    torch.manual_seed(0)
    model = Mask2Triplane(cfg)
    lm = Mask2TriplaneLoss(model, recipe)
    d = lm.adversarial.discriminator
    assert d.condition_channels == model.num_classes + CODE_DIM
    batch = make_batch_fn(SynHead(fake_data, "train"), cfg, recipe, torch.device("cpu"))(np.random.default_rng(0))
    batch["step"] = 10
    lm(batch)["loss"].backward()
    real, fake, cond = lm.adversarial._pending
    k = recipe.adv_patch
    assert cond.shape == (real.shape[0], model.num_classes + CODE_DIM, k, k)
    # the code channels are constant over the patch and differ between heads with different colours
    code = cond[:, model.num_classes:]
    assert torch.equal(code, code[:, :, :1, :1].expand_as(code))
    assert not torch.allclose(code[0, :, 0, 0], code[1, :, 0, 0])
    assert lm.after_step(0)["d_loss"] > 0
    # a cVAE generator has no colour code to condition on, and photos have none either
    with pytest.raises(ValueError, match="named colours"):
        Mask2TriplaneLoss(Mask2Triplane({**cfg, "appearance_code": "cvae"}), recipe)
    with pytest.raises(ValueError, match="cannot be combined"):
        Mask2TriplaneLoss(model, Mask2TriplaneRecipe(**{**vars(recipe), "adv_photos": "somewhere"}))


# ---- fitted appearance prior --------------------------------------------------------------------------

def test_fit_gaussian_recovers_mean_and_covariance():
    from training.prior_fit import fit_gaussian

    rng = np.random.default_rng(0)
    true_l = np.tril(rng.normal(size=(4, 4)) * 0.3) + np.eye(4)
    codes = rng.normal(size=(20000, 4)) @ true_l.T + np.array([1.0, -2.0, 0.5, 0.0])
    mean, tril = fit_gaussian(codes, shrinkage=0.0)
    assert np.allclose(mean, [1.0, -2.0, 0.5, 0.0], atol=0.05)
    assert np.allclose(tril @ tril.T, true_l @ true_l.T, atol=0.05) and np.allclose(tril, np.tril(tril))
    with pytest.raises(ValueError):
        fit_gaussian(codes[:1])


def test_a_fitted_prior_goes_into_the_card_and_drives_the_seeds(fake_data, tmp_path):
    from s3d_tiny_weights import make_tiny_weights

    from backend.models.loading import load_mask2triplane
    from training.prior_fit import fit_prior

    make_tiny_weights(tmp_path)
    plain, _ = load_mask2triplane(tmp_path)
    summary = fit_prior(tmp_path, fake_data, None, None, "test command", shrinkage=0.1)
    assert summary["heads"] == 5
    model, card = load_mask2triplane(tmp_path)  # the card still verifies: only its inference block changed
    prior = card["inference"]["z_prior"]
    assert [len(r) for r in prior["scale_tril"]] == list(range(1, model.z_dim + 1)) and prior["command"] == "test command"
    mean, tril = model.z_prior
    eps = plain.sample_z(7)
    assert torch.equal(model.sample_z(7), model.sample_z(7))
    assert torch.allclose(model.sample_z(7), mean[None] + eps @ tril.T, atol=1e-6)
    assert not torch.allclose(model.sample_z(7), eps)
    text = (tmp_path / "mask2triplane_lite.json").read_text()
    assert len(text.splitlines()) < 200  # matrix rows on one line each


def test_a_broken_prior_in_the_card_is_a_clear_weights_error(tmp_path):
    from s3d_tiny_weights import make_tiny_weights

    from backend.models.loading import load_mask2triplane
    from backend.weights import WeightsError

    make_tiny_weights(tmp_path)
    path = tmp_path / "mask2triplane_lite.json"
    card = json.loads(path.read_text())
    card.setdefault("inference", {})["z_prior"] = {"mean": [0.0, 1.0], "scale_tril": [[1.0], [0.0, 1.0]]}
    path.write_text(json.dumps(card))
    with pytest.raises(WeightsError, match="z_prior"):
        load_mask2triplane(tmp_path)


# ---- appearance figures -------------------------------------------------------------------------------

def _head(skin, hair, lips, cloth):
    from backend.labels import LABEL_IDS

    labels = np.repeat([LABEL_IDS["skin"], LABEL_IDS["hair"], LABEL_IDS["u_lip"], LABEL_IDS["cloth"]], 10)
    rgb = np.repeat(np.array([skin, hair, lips, cloth], np.uint8), 10, axis=0)
    return rgb, labels


def test_appearance_figures_are_one_for_the_ground_truth_and_drop_for_washed_out_colours():
    from training.appearance_eval import appearance_figures, group_colours

    gt = [_head((200, 150, 120), (40, 30, 20), (180, 80, 80), (20, 60, 200)),
          _head((120, 80, 60), (220, 190, 120), (150, 60, 60), (200, 40, 40))]
    gt_groups = [group_colours(*h) for h in gt]
    same = appearance_figures([{"gen": g, "gt": g, "sharpness": (2.0, 2.0)} for g in gt_groups],
                              [[g["hair"] for g in gt_groups]], [g["hair"] for g in gt_groups])
    assert same["contrast_ratio"] == same["chroma_ratio"] == same["sharpness_ratio"] == 1.0
    assert same["hair_diversity_ratio"] == 1.0
    # halfway to grey and to the skin: less contrast, less chroma; one hair colour for all seeds: no diversity
    washed = []
    for rgb, labels in gt:
        skin = rgb[labels == 1][0].astype(float)
        out = rgb.astype(float)
        out[labels != 1] = 0.5 * out[labels != 1] + 0.5 * (0.5 * skin + 0.5 * 128)
        washed.append(group_colours(out.astype(np.uint8), labels))
    fig = appearance_figures([{"gen": w, "gt": g, "sharpness": (1.0, 2.0)} for w, g in zip(washed, gt_groups)],
                             [[washed[0]["hair"], washed[0]["hair"]]], [g["hair"] for g in gt_groups])
    assert fig["contrast_ratio"] < 0.8 and fig["chroma_ratio"] < 0.8 and fig["sharpness_ratio"] == 0.5
    assert fig["hair_diversity_ratio"] == 0.0


def test_gradient_energy_falls_with_blur():
    import cv2

    from training.appearance_eval import gradient_energy

    rng = np.random.default_rng(0)
    img = (rng.uniform(size=(64, 64, 3)) * 255).astype(np.uint8)
    region = np.ones((64, 64), bool)
    sharp = gradient_energy(img, region)
    blurred = gradient_energy(cv2.GaussianBlur(img, (0, 0), 2.0), region)
    assert blurred < 0.2 * sharp and gradient_energy(img, np.zeros((64, 64), bool)) == 0.0


# ---- the 2D-only data path (photos + masks) -------------------------------------------------------

def _write_celebamask(root, n=3, res=64):
    """A CelebAMask-HQ-layout folder: ``CelebA-HQ-img/<i>.jpg`` photos (a skin disc with hair on top on a
    green background) and ``mask/<i>.png`` label ids."""
    from PIL import Image

    (root / "CelebA-HQ-img").mkdir(parents=True)
    (root / "mask").mkdir()
    yy, xx = np.mgrid[0:res, 0:res] / res * 2 - 1
    for i in range(n):
        ids = np.zeros((res, res), np.uint8)
        ids[xx ** 2 + yy ** 2 < 0.5] = 1
        ids[(xx ** 2 + yy ** 2 < 0.5) & (yy < -0.3)] = 13
        rgb = np.zeros((res, res, 3), np.uint8)
        rgb[:] = (30, 160, 40)
        rgb[ids == 1] = (200 - 20 * i, 150, 120)
        rgb[ids == 13] = (40, 30, 20 + 30 * i)
        Image.fromarray(np.kron(rgb, np.ones((2, 2, 1), np.uint8))).save(root / "CelebA-HQ-img" / f"{i}.jpg", quality=95)
        Image.fromarray(ids).save(root / "mask" / f"{i}.png")
    return root


def test_photo_patches_are_composited_on_white_and_carry_no_depth(tmp_path):
    from training.datasets import CelebAMaskHQ
    from training.patches import photo_patch

    item = CelebAMaskHQ(_write_celebamask(tmp_path / "celeba")).item(0)
    p = photo_patch(item["rgb"], item["mask"], np.random.default_rng(0), 16, 1.0, 19)
    assert p["patch_has_depth"] == 0.0 and not p["patch_depth"].any()
    background = p["patch_label"][0] > 0.99
    assert background.any() and np.allclose(p["patch_rgb"][:, background], 1.0)  # no green left
    assert p["patch_rgb"][:, p["patch_label"][1] > 0.99].std(axis=1).max() < 0.02  # the skin disc, uniform


def test_photos_join_the_adversarial_batch_and_train(fake_data, tmp_path):
    from backend.models.config import get_config
    from backend.models.mask2triplane import Mask2Triplane
    from training.datasets import SynHead
    from training.train_mask2triplane import Mask2TriplaneLoss, Mask2TriplaneRecipe, make_batch_fn

    photos = _write_celebamask(tmp_path / "celeba")
    cfg = {**get_config("lite", "mask2triplane"), **_tiny_m2t_override()}
    recipe = Mask2TriplaneRecipe(**{**ADV_RECIPE, "adv_photos": str(photos), "adv_photo_batch": 3})
    torch.manual_seed(0)
    model = Mask2Triplane(cfg)
    lm = Mask2TriplaneLoss(model, recipe)
    batch = make_batch_fn(SynHead(fake_data, "train"), cfg, recipe, torch.device("cpu"))(np.random.default_rng(0))
    assert batch["photo_mask"].shape == (3, 19, 32, 32) and batch["photo_patch_ray_o"].shape == (3, 64, 3)
    assert batch["patch_has_depth"].tolist() == [1.0, 1.0] and batch["photo_patch_has_depth"].tolist() == [0.0] * 3
    batch["step"] = 10
    before = [p.detach().clone() for p in model.mask_encoder.parameters()]
    terms = lm(batch)
    terms["loss"].backward()
    real, fake, cond = lm.adversarial._pending
    assert real.shape == fake.shape == (5, 6, 8, 8) and cond.shape == (5, 19, 8, 8)  # 2 heads + 3 photos
    assert real[2:, 3:].abs().sum() == 0 and fake[2:, 3:].abs().sum() == 0  # photos: no normals on either side
    assert lm.after_step(0)["d_loss"] > 0
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    assert any(not torch.equal(a, b) for a, b in zip(before, model.mask_encoder.parameters()))
