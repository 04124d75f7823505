"""Networks of backend/models: shapes, the renderer against analytic densities, weights save/load."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from backend.coords import BOX_SIZE_M
from backend.models.config import PROFILES, get_config
from backend.models.loading import LABEL_SET, load_mask2triplane, load_sketch2mask
from backend.models.mask2triplane import Mask2Triplane, ids_to_onehot
from backend.models.renderer import VolumeRenderer, camera_rays, orthographic_camera, sample_pdf
from backend.models.sketch2mask import SketchToMask
from backend.weights import WeightsError, save_weights

torch.set_num_threads(1)


def _tiny_m2t_config():
    cfg = get_config("lite", "mask2triplane")
    cfg.update(mask_resolution=32, encoder_channels=[8, 16, 16], pixel_feature_channels=8, z_dim=8, w_dim=16,
               num_ws_geometry=2, num_ws_appearance=2, plane_resolution=32, plane_channels=8,
               synthesis_channels=8, depth_code_channels=4, decoder_hidden=16, appearance_resolution=16,
               appearance_channels=[8, 8])
    return cfg


def _tiny_s2m_config():
    cfg = get_config("lite", "sketch2mask")
    cfg.update(channels=[4, 8, 8, 8, 8, 8, 8, 8], num_ws_geometry=2, w_dim=16)
    return cfg


def test_profiles_are_json_data_and_style_shapes_match():
    for name, prof in PROFILES.items():
        json.dumps(prof)  # plain data, storable in a card
        m2t, s2m = prof["mask2triplane"], prof["sketch2mask"]
        assert (s2m["num_ws_geometry"], s2m["w_dim"]) == (m2t["num_ws_geometry"], m2t["w_dim"]), name
    paper = PROFILES["paper"]["mask2triplane"]
    assert (paper["num_ws_geometry"] + paper["num_ws_appearance"], paper["w_dim"]) == (14, 512)
    assert (paper["plane_channels"], paper["plane_resolution"]) == (32, 256)
    with pytest.raises(ValueError, match="unknown profile"):
        get_config("huge", "mask2triplane")


def test_lite_mask2triplane_shapes_and_contract():
    model = Mask2Triplane(get_config("lite", "mask2triplane")).eval()
    cfg = model.cfg
    ids = torch.randint(0, 19, (2, 512, 512))
    z = model.sample_z(3, batch=2)
    enc = model.encode(ids_to_onehot(ids, 19), z)
    assert enc.w_plus.shape == (2, cfg["num_ws_geometry"] + cfg["num_ws_appearance"], cfg["w_dim"])
    assert enc.pixel_features.shape == (2, cfg["pixel_feature_channels"], cfg["plane_resolution"], cfg["plane_resolution"])
    with torch.no_grad():
        planes = model.synthesize(enc)
        assert planes.shape == (2, 3, cfg["plane_channels"], cfg["plane_resolution"], cfg["plane_resolution"])
        out = model.query(planes, torch.rand(2, 100, 3) * 2 - 1)
    assert out["sigma"].shape == (2, 100, 1) and bool((out["sigma"] >= 0).all())
    assert out["rgb"].shape == (2, 100, 3) and 0 <= float(out["rgb"].min()) and float(out["rgb"].max()) <= 1
    assert out["semantic"].shape == (2, 100, 19)
    assert model.geometry_ws(ids_to_onehot(ids, 19)).shape == (2, cfg["num_ws_geometry"], cfg["w_dim"])
    with pytest.raises(ValueError, match="mask_onehot"):
        model.encode(torch.zeros(1, 5, 64, 64), model.sample_z(0))


def test_seed_determinism_and_z_changes_planes():
    model = Mask2Triplane(_tiny_m2t_config()).eval()
    ids = torch.randint(0, 19, (1, 64, 64))
    a = model.planes_from_mask(ids, model.sample_z(7))
    b = model.planes_from_mask(ids, model.sample_z(7))
    c = model.planes_from_mask(ids, model.sample_z(8))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    with pytest.raises(ValueError, match="0..18"):
        model.planes_from_mask(torch.full((1, 8, 8), 19), model.sample_z(0))


def test_xz_plane_is_aligned_with_the_front_mask():
    """Pixel features of the front mask land on the X-Z plane: a query at the box position of a pixel
    reads the plane at that pixel (row 0 = top = z +1, column 0 = x -1)."""
    from backend.models.mask2triplane import TriplaneDecoder

    r = 8
    planes = torch.zeros(1, 3, 1, r, r)
    planes[0, 1, 0, 1, 6] = 1.0  # X-Z plane, row 1 (near the top), column 6 (right)
    x = (6 + 0.5) / r * 2 - 1
    z = 1 - (1 + 0.5) / r * 2
    feats = TriplaneDecoder.sample_planes(planes, torch.tensor([[[x, 0.3, z], [-x, 0.3, z]]]))
    assert feats[0, 0, 1] == pytest.approx(1.0)  # channel layout: plane-major, X-Z is plane 1
    assert feats[0, 1, 1] == pytest.approx(0.0)


def test_sketch2mask_shapes_for_both_input_sizes():
    net = SketchToMask(get_config("lite", "sketch2mask")).eval()
    for size in (512, 128):
        logits, style = net(torch.rand(1, 1, size, size))
        assert logits.shape == (1, 19, size, size)
        assert style.shape == (1, PROFILES["lite"]["sketch2mask"]["num_ws_geometry"], PROFILES["lite"]["sketch2mask"]["w_dim"])
    with pytest.raises(ValueError, match="sketch must be"):
        net(torch.rand(1, 3, 64, 64))


def test_mirror_averaged_prediction_is_mirror_equivariant():
    from backend.labels import MIRROR_IDS

    torch.manual_seed(0)
    net = SketchToMask(_tiny_s2m_config()).eval()
    x = torch.rand(2, 1, 128, 128)
    mirrored_back = lambda s: s.flip(-1)[:, list(MIRROR_IDS)]  # noqa: E731
    # averaged: the prediction for the mirrored sketch is the mirrored prediction, left/right labels swapped
    a = net.label_scores(x, mirror_average=True)
    b = net.label_scores(x.flip(-1), mirror_average=True)
    assert torch.allclose(mirrored_back(b), a, atol=1e-5)
    assert torch.allclose(a.exp().sum(1), torch.ones(2, 128, 128), atol=1e-4)  # log of a distribution
    # plain logits of an untrained network are not equivariant: the test above can fail
    plain = net.label_scores(x, mirror_average=False)
    assert torch.equal(plain, net(x)[0])
    assert not torch.allclose(mirrored_back(net.label_scores(x.flip(-1), mirror_average=False)), plain, atol=1e-3)
    # the model's own setting is the default
    net.mirror_average = True
    assert torch.equal(net.predict_ids(x), a.argmax(1))


def test_mirror_averaged_field_is_mirror_equivariant():
    from backend.labels import MIRROR_IDS

    torch.manual_seed(0)
    model = Mask2Triplane(_tiny_m2t_config()).eval()
    res = model.cfg["mask_resolution"]
    ids = torch.randint(0, 19, (1, res, res))
    mirrored_ids = torch.tensor(MIRROR_IDS)[ids.flip(-1)]
    z = model.sample_z(3)
    xyz = torch.rand(1, 200, 3) * 2 - 1
    flip = torch.tensor([-1.0, 1.0, 1.0])
    model.mirror_average = True
    pair, pair_m = model.planes_from_mask(ids, z), model.planes_from_mask(mirrored_ids, z)
    c, r = model.cfg["plane_channels"], model.cfg["plane_resolution"]
    assert pair.shape == (1, 2, 3, c, r, r)
    with torch.no_grad():
        a, b = model.query(pair, xyz), model.query(pair_m, xyz * flip)
        # the averaged field of the mirrored mask is the mirrored averaged field, labels swapped back
        assert torch.allclose(a["occupancy_logit"], b["occupancy_logit"], atol=1e-5)
        assert torch.allclose(a["rgb"], b["rgb"], atol=1e-5)
        assert torch.allclose(a["semantic"], b["semantic"][..., list(MIRROR_IDS)], atol=1e-5)
        assert torch.allclose(a["semantic"].exp().sum(-1), torch.ones(1, 200), atol=1e-4)  # log-probabilities
        scale = model.decoder.density_scale
        assert torch.allclose(a["sigma"], scale * torch.nn.functional.softplus(a["occupancy_logit"]))
        # it is the mean of the two members' occupancy logits
        first, second = model.query(pair[:, 0], xyz), model.query(pair[:, 1], xyz * flip)
        mean = (first["occupancy_logit"] + second["occupancy_logit"]) / 2
        assert torch.allclose(a["occupancy_logit"], mean, atol=1e-6)
        # without averaging an untrained generator is not equivariant: the checks above can fail
        model.mirror_average = False
        plain, plain_m = model.planes_from_mask(ids, z), model.planes_from_mask(mirrored_ids, z)
        assert plain.dim() == 5 and torch.equal(plain, pair[:, 0])
        assert not torch.allclose(model.query(plain, xyz)["occupancy_logit"],
                                  model.query(plain_m, xyz * flip)["occupancy_logit"], atol=1e-3)
    with pytest.raises(ValueError, match="mirror pair"):
        model.query(torch.cat([pair, pair[:, :1]], 1), xyz)


def _sphere_field(radius: float, density: float):
    def field(xyz):
        inside = (xyz.norm(dim=-1, keepdim=True) < radius).float()
        sem = torch.full((*xyz.shape[:2], 19), -20.0)
        sem[..., 1] = 20.0
        return {"sigma": inside * density, "rgb": torch.full((*xyz.shape[:2], 3), 0.25), "semantic": sem}
    return field


@pytest.mark.parametrize("num_importance", [0, 32])
def test_renderer_matches_analytic_sphere(num_importance):
    """Constant density k in a sphere of radius a: the central ray has alpha = 1 - exp(-2 k a) and the
    expected hit depth entry + (1/k - (L + 1/k) e^{-kL}) / (1 - e^{-kL}) with L = 2a."""
    a, k = 0.5, 1.5
    renderer = VolumeRenderer(num_samples=512, num_importance=num_importance, background_rgb=1.0)
    cam = orthographic_camera("front", resolution=1, size_m=0.01)  # one ray through the centre
    out = renderer.render(_sphere_field(a, k), cam)
    L = 2 * a
    alpha = 1 - math.exp(-k * L)
    assert float(out["alpha"]) == pytest.approx(alpha, abs=0.01)
    assert float(out["rgb"][0, 0]) == pytest.approx(0.25 * alpha + (1 - alpha), abs=0.01)
    expected_s = (1 / k - (L + 1 / k) * math.exp(-k * L)) / (1 - math.exp(-k * L))
    # the camera plane is the box face, half a box from the centre; box units -> metres
    entry_m = BOX_SIZE_M / 2 - a * BOX_SIZE_M / 2
    assert float(out["depth"]) == pytest.approx(entry_m + expected_s * BOX_SIZE_M / 2, abs=0.003)
    assert float(out["semantic"][0, 1]) == pytest.approx(alpha, abs=0.01)
    assert float(out["semantic"][0, 0]) == pytest.approx(1 - alpha, abs=0.01)


def test_renderer_opaque_sphere_silhouette_and_depth_from_the_side():
    a = 0.6
    renderer = VolumeRenderer(num_samples=64, num_importance=64)
    out = renderer.render(_sphere_field(a, 500.0), orthographic_camera("left", 32))
    cols, rows = np.meshgrid((np.arange(32) + 0.5) / 32 * 2 - 1, (np.arange(32) + 0.5) / 32 * 2 - 1)
    inside = cols ** 2 + rows ** 2 < (a - 0.05) ** 2
    outside = cols ** 2 + rows ** 2 > (a + 0.05) ** 2
    alpha = out["alpha"][0, 0].numpy()
    assert alpha[inside].min() > 0.99 and alpha[outside].max() < 0.01
    depth = out["depth"][0, 0].numpy()
    true_depth = BOX_SIZE_M / 2 - np.sqrt(np.clip(a ** 2 - cols ** 2 - rows ** 2, 0, None)) * BOX_SIZE_M / 2
    assert np.abs(depth[inside] - true_depth[inside]).max() < 0.004  # metres


def test_perspective_rays_point_at_the_target():
    cam = orthographic_camera("front", 3)
    cam.update(type="perspective", fov_deg=30.0)
    origins, dirs, fwd = camera_rays(cam)
    centre = dirs[4]  # middle pixel of 3x3
    assert torch.allclose(centre, fwd, atol=1e-6)
    assert torch.allclose(origins[0], origins[8])
    assert torch.allclose(dirs.norm(dim=-1), torch.ones(9))


def test_sample_pdf_concentrates_where_the_weight_is():
    bins = torch.linspace(0, 1, 11)[None]
    w = torch.zeros(1, 10)
    w[0, 7] = 1.0
    s = sample_pdf(bins, w, 50, None)
    assert ((s >= 0.7) & (s <= 0.8)).float().mean() > 0.95


def _card(kind, cfg):
    return {"kind": kind, "profile": "test", "config": cfg, "label_set": LABEL_SET, "box_size_m": BOX_SIZE_M}


def test_weights_roundtrip_and_clear_errors(tmp_path):
    model = Mask2Triplane(_tiny_m2t_config())
    save_weights(model.state_dict(), _card("mask2triplane", model.cfg), "mask2triplane_lite", tmp_path)
    loaded, card = load_mask2triplane(tmp_path, "cpu")
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    assert card["sha256"] and not loaded.training

    net = SketchToMask(_tiny_s2m_config())
    save_weights(net.state_dict(), _card("sketch2mask", net.cfg), "sketch2mask_lite", tmp_path)
    net2, _ = load_sketch2mask(tmp_path)
    x = torch.rand(1, 1, 128, 128)
    net.eval()
    assert torch.allclose(net(x)[0], net2(x)[0])

    # the card's inference section sets mirror averaging; a malformed one is refused
    card = _card("sketch2mask", net.cfg)
    card["inference"] = {"mirror_average": True}
    save_weights(net.state_dict(), card, "s_mirror", tmp_path)
    assert load_sketch2mask(tmp_path, name="s_mirror")[0].mirror_average and not net2.mirror_average
    card["inference"] = {"mirror_average": "yes"}
    save_weights(net.state_dict(), card, "s_bad_inference", tmp_path)
    with pytest.raises(WeightsError, match="mirror_average"):
        load_sketch2mask(tmp_path, name="s_bad_inference")

    # the generator's semantic logit offsets: added to the semantic logits in eval mode only
    from backend.labels import LABEL_NAMES, NUM_CLASSES

    card = _card("mask2triplane", model.cfg)
    card["inference"] = {"semantic_logit_offsets": {"l_eye": -1.5, "mouth": 0.5}}
    save_weights(model.state_dict(), card, "m_offsets", tmp_path)
    adjusted, _ = load_mask2triplane(tmp_path, name="m_offsets")
    assert loaded.semantic_logit_offsets is None
    res = model.cfg["mask_resolution"]
    planes = loaded.planes_from_mask(torch.zeros(1, res, res, dtype=torch.long), loaded.sample_z(0))
    xyz = torch.rand(1, 50, 3) * 2 - 1
    with torch.no_grad():
        a, b = loaded.query(planes, xyz), adjusted.query(planes, xyz)
        expected = torch.zeros(NUM_CLASSES)
        expected[LABEL_NAMES.index("l_eye")], expected[LABEL_NAMES.index("mouth")] = -1.5, 0.5
        assert torch.allclose(b["semantic"] - a["semantic"], expected.expand(1, 50, NUM_CLASSES), atol=1e-5)
        assert torch.equal(a["sigma"], b["sigma"]) and torch.equal(a["rgb"], b["rgb"])
        loaded.train(), adjusted.train()  # training never sees them
        assert torch.equal(loaded.query(planes, xyz)["semantic"], adjusted.query(planes, xyz)["semantic"])
    card["inference"] = {"mirror_average": True}
    save_weights(model.state_dict(), card, "m_mirror", tmp_path)
    mirrored_model = load_mask2triplane(tmp_path, name="m_mirror")[0]
    assert mirrored_model.mirror_average and not loaded.mirror_average
    assert mirrored_model.planes_from_mask(torch.zeros(1, res, res, dtype=torch.long), loaded.sample_z(0)).dim() == 6
    for bad_offsets in ({"nose_tip": -1.0}, {"l_eye": "low"}, {"l_eye": True}):
        card["inference"] = {"semantic_logit_offsets": bad_offsets}
        save_weights(model.state_dict(), card, "m_bad_offsets", tmp_path)
        with pytest.raises(WeightsError, match="semantic_logit_offsets"):
            load_mask2triplane(tmp_path, name="m_bad_offsets")
    # the sketch network's offsets shift its label scores, with and without mirror averaging
    card = _card("sketch2mask", net.cfg)
    card["inference"] = {"mirror_average": True, "semantic_logit_offsets": {"l_eye": -1.0, "mouth": 2.0}}
    save_weights(net.state_dict(), card, "s_offsets", tmp_path)
    shifted, _ = load_sketch2mask(tmp_path, name="s_offsets")
    expected = torch.zeros(NUM_CLASSES)
    expected[LABEL_NAMES.index("l_eye")], expected[LABEL_NAMES.index("mouth")] = -1.0, 2.0
    for mirror in (False, True):
        diff = shifted.label_scores(x, mirror) - net2.label_scores(x, mirror)
        assert torch.allclose(diff, expected[None, :, None, None].expand_as(diff), atol=1e-5)

    # a card for another box size is refused with the reason
    bad = _card("mask2triplane", model.cfg)
    bad["box_size_m"] = 0.5
    save_weights(model.state_dict(), bad, "m_box", tmp_path)
    with pytest.raises(WeightsError, match="box_size_m"):
        load_mask2triplane(tmp_path, name="m_box")
    # tensors that do not fit the config
    other = dict(model.cfg, decoder_hidden=32)
    save_weights(model.state_dict(), _card("mask2triplane", other), "m_shape", tmp_path)
    with pytest.raises(WeightsError) as e:
        load_mask2triplane(tmp_path, name="m_shape")
    assert e.value.code == "weights_mismatch"
    # corrupted file
    (tmp_path / "mask2triplane_lite.safetensors").write_bytes(b"garbage")
    with pytest.raises(WeightsError) as e:
        load_mask2triplane(tmp_path)
    assert e.value.code == "weights_corrupt"


def test_modulated_conv_equals_per_sample_weight_modulation():
    """The non-fused form equals StyleGAN2's eq. 1-3 (modulate, demodulate the weights per sample)."""
    from backend.models.mask2triplane import ModulatedConv2d

    torch.manual_seed(0)
    conv = ModulatedConv2d(4, 5, 3, w_dim=6)
    torch.nn.init.normal_(conv.affine_geometry.weight, 0, 0.5)
    x, wg, wa = torch.randn(2, 4, 7, 7), torch.randn(2, 6), torch.randn(2, 6)
    style = conv.affine_geometry(wg) + conv.affine_appearance(wa)
    for i in range(2):
        w = conv.weight * style[i][None, :, None, None]
        w = w / torch.sqrt(w.pow(2).sum(dim=(1, 2, 3), keepdim=True) + 1e-8)
        ref = torch.nn.functional.conv2d(x[i:i + 1], w, padding=1) + conv.bias[None, :, None, None]
        assert torch.allclose(conv(x, wg, wa)[i:i + 1], ref, atol=1e-5)


def test_depth_interval_prior_puts_the_surface_at_the_interval_ends():
    """With the MLP's occupancy output zeroed, the decoder's occupancy logit is k * (h - |y - c|) from
    channels 0 and 1 of the X-Z plane: inside the interval positive, zero at y = c +- h, negative beyond."""
    from backend.models.config import get_config
    from backend.models.mask2triplane import Mask2Triplane

    cfg = {**get_config("lite", "mask2triplane"), "decoder_relative_depth": False}  # same MLP as "off" below
    k = cfg["depth_interval_slope"]
    assert k > 0
    model = Mask2Triplane(cfg).eval()
    with torch.no_grad():
        model.decoder.out.weight[0].zero_()
        model.decoder.out.bias[0] = 0.0
    r, c = cfg["plane_resolution"], cfg["plane_channels"]
    planes = torch.zeros(1, 3, c, r, r)
    planes[:, 1, 0] = 0.1   # centre
    planes[:, 1, 1] = 0.3   # half-thickness
    assert torch.equal(model.depth_interval(planes), planes[:, 1, :2])
    y = torch.tensor([0.1, 0.4, -0.2, 0.6])
    xyz = torch.stack([torch.zeros(4), y, torch.zeros(4)], -1)[None]
    with torch.no_grad():
        logit = model.query(planes, xyz)["occupancy_logit"][0, :, 0]
    assert torch.allclose(logit, k * (0.3 - (y - 0.1).abs()), atol=1e-4)
    assert logit[0] > 0 and abs(float(logit[1])) < 1e-3 and abs(float(logit[2])) < 1e-3 and logit[3] < 0
    off = Mask2Triplane({**cfg, "depth_interval_slope": 0.0}).eval()
    off.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.allclose(off.query(planes, xyz)["occupancy_logit"], torch.zeros(1, 4, 1), atol=1e-6)


def test_depth_interval_does_not_change_with_the_seed():
    """The interval channels (and so the prior's shape) come from the geometry ws with a neutral
    appearance: two seeds give the same interval but different colour channels."""
    from backend.models.config import get_config
    from backend.models.mask2triplane import Mask2Triplane

    torch.manual_seed(0)
    model = Mask2Triplane(get_config("lite", "mask2triplane")).eval()
    ids = torch.zeros(1, 64, 64, dtype=torch.long)
    ids[:, 16:48, 20:44] = 1
    ids[:, 10:20, 18:46] = 13
    a = model.planes_from_mask(ids, model.sample_z(1))
    b = model.planes_from_mask(ids, model.sample_z(2))
    assert torch.allclose(model.depth_interval(a), model.depth_interval(b), atol=1e-6)
    assert not torch.allclose(a[:, 1, 2:], b[:, 1, 2:], atol=1e-4)


def test_relative_depth_tells_front_from_back():
    """The decoder's extra input: -1 on the front end of a pixel's depth interval (facing -Y), +1 on the
    back end, 0 at the centre; clamped far outside; absent when the config turns it off."""
    from backend.models.config import get_config
    from backend.models.mask2triplane import Mask2Triplane, TriplaneDecoder

    interval = torch.tensor([[[0.1, 0.3]] * 5])  # c = 0.1, h = 0.3 at every point
    y = torch.tensor([-0.2, 0.1, 0.4, 5.0, -5.0])
    xyz = torch.stack([torch.zeros(5), y, torch.zeros(5)], -1)[None]
    t = TriplaneDecoder.relative_depth(interval, xyz)[0, :, 0]
    half = 0.3 + 0.02
    assert torch.allclose(t, torch.tensor([-0.3 / half, 0.0, 0.3 / half, 2.0, -2.0]), atol=1e-6)
    cfg = get_config("lite", "mask2triplane")
    on, off = Mask2Triplane(cfg), Mask2Triplane({**cfg, "decoder_relative_depth": False})
    assert on.decoder.fc1.in_features == off.decoder.fc1.in_features + 1


def test_detached_appearance_leaves_the_density_gradient_to_geometry():
    """With ``detach_appearance`` a loss on the rendered semantics (or RGB) reaches the semantic logits
    but not the density; without it, it reaches both."""
    from backend.models.renderer import VolumeRenderer

    r = VolumeRenderer(8, 0)
    origins = torch.tensor([[[0.0, -1.5, 0.0]]])
    dirs = torch.tensor([[[0.0, 1.0, 0.0]]])
    grads = {}
    for detach in (False, True):
        sigma = torch.full((1, 8, 1), 2.0, requires_grad=True)
        sem = torch.zeros((1, 8, 3), requires_grad=True)
        field = lambda x: {"sigma": sigma.expand(1, x.shape[1], 1), "rgb": torch.zeros(1, x.shape[1], 3),  # noqa: E731
                           "semantic": sem}
        out = r.render_rays(field, origins, dirs, detach_appearance=detach)
        (-torch.log(out["semantic"][0, 0, 1])).backward()
        grads[detach] = tuple(0.0 if g is None else g.abs().sum().item() for g in (sigma.grad, sem.grad))
    assert grads[False][0] > 0 and grads[False][1] > 0
    assert grads[True][0] == 0 and grads[True][1] > 0
