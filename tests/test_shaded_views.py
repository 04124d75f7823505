"""benchmarks/shaded_views.py: grey-shaded orthographic front/back renders of a mesh (issue 36)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
trimesh = pytest.importorskip("trimesh")
pytest.importorskip("embreex")
_spec = importlib.util.spec_from_file_location("shaded_views", ROOT / "benchmarks" / "shaded_views.py")
sv = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sv)

SIZE = 64
HALF = 0.2  # metres: the tri-plane box's half side


def _sphere(bump: bool) -> tuple[np.ndarray, np.ndarray]:
    """Sphere of radius 0.1 m at the origin; with ``bump``, a Gaussian bump on its front (-Y) pole,
    right of centre (+X), so the mesh is asymmetric front/back and left/right."""
    m = trimesh.creation.icosphere(subdivisions=4, radius=0.1)
    v = np.array(m.vertices)
    if bump:
        centre = np.array([0.04, -0.09, 0.0])
        centre *= 0.1 / np.linalg.norm(centre)
        w = np.exp(-np.sum((v - centre) ** 2, 1) / (2 * 0.02 ** 2))
        v += 0.03 * w[:, None] * v / np.linalg.norm(v, axis=1, keepdims=True)
    return v, np.array(m.faces)


def _is_mesh(image: np.ndarray) -> np.ndarray:
    return (image[..., 0] == image[..., 1]) & (image[..., 1] == image[..., 2])


def test_front_grey_on_mesh_background_elsewhere():
    v, f = _sphere(False)
    r = sv.render_view(v, f, "front", SIZE, HALF)
    img, hit = r["image"], r["hit"]
    s = (np.arange(SIZE) + 0.5) / SIZE * 2 - 1
    inside = np.hypot(*np.meshgrid(s, s)) * HALF < 0.1
    edge = np.abs(np.hypot(*np.meshgrid(s, s)) * HALF - 0.1) < 0.006
    assert np.array_equal(hit[~edge], inside[~edge])
    assert _is_mesh(img)[hit].all()
    assert (img[~hit] == np.array(sv.BACKGROUND, np.uint8)).all()
    # lit from the viewer: the centre faces the light and is brighter than the rim
    c = SIZE // 2
    assert img[c, c, 0] > 200 and img[c, c, 0] > img[c, int(SIZE * 0.27), 0] + 40
    # heights towards the viewer: the front pole is at y = -0.1, so height +0.1
    assert abs(r["height_m"][c, c] - 0.1) < 0.003
    assert np.isnan(r["height_m"][~hit]).all()


def test_bump_changes_shading_and_front_back_differ():
    plain, bumped = _sphere(False), _sphere(True)
    f0 = sv.render_view(*plain, "front", SIZE, HALF)["image"].astype(int)
    f1 = sv.render_view(*bumped, "front", SIZE, HALF)["image"].astype(int)
    b1 = sv.render_view(*bumped, "back", SIZE, HALF)["image"].astype(int)
    b0 = sv.render_view(*plain, "back", SIZE, HALF)["image"].astype(int)
    changed = np.abs(f1 - f0)[..., 0] > 20
    assert changed.sum() > 30
    # the bump is right of centre (+X): on the front it shows in the image's right half
    cols = np.nonzero(changed)[1]
    assert np.mean(cols > SIZE // 2) > 0.8
    # seen from behind, the bump is hidden: the back of the bumped sphere is the plain back
    assert np.abs(b1 - b0).max() <= 2
    assert np.abs(f1 - b1)[..., 0].max() > 20


def test_back_view_mirrors_x():
    # a sphere pushed to +X sits right in the front view and left in the back view
    v, f = _sphere(False)
    v = v + np.array([0.06, 0.0, 0.0])
    front = sv.render_view(v, f, "front", SIZE, HALF)["hit"]
    back = sv.render_view(v, f, "back", SIZE, HALF)["hit"]
    cols_f, cols_b = np.nonzero(front)[1], np.nonzero(back)[1]
    assert cols_f.mean() > SIZE * 0.6 and cols_b.mean() < SIZE * 0.4
    with pytest.raises(ValueError):
        sv.view_rays("left", SIZE, HALF)


def test_back_relief_grows_with_a_bump_on_the_back():
    from backend.labels import LABEL_IDS

    mirror = np.array([1.0, -1.0, 1.0])  # front <-> back; the faces' winding is reversed to match
    (v, f), (bv, bf) = _sphere(False), _sphere(True)
    hair = np.full(len(v), LABEL_IDS["hair"])
    plain = sv.back_relief_mm(sv.render_view(v * mirror, f[:, ::-1], "back", SIZE, HALF, labels=hair))
    bumped = sv.back_relief_mm(sv.render_view(bv * mirror, bf[:, ::-1], "back", SIZE, HALF, labels=hair))
    assert plain < 0.1 and bumped > 0.2
    assert np.isnan(sv.back_relief_mm(sv.render_view(v, f, "back", SIZE, HALF)))  # no labels: no hair
