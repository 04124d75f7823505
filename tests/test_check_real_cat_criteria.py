"""benchmarks/check_real_sketches.py: the cat criteria (issue 40) on meshes built here, the human criteria
unchanged, the cat mask colours on the contact sheet, and a clear message when the cat weights are missing.

No network runs: every mesh is an icosphere written as the backend's mesh.ply (backend.export.ply_bytes).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

trimesh = pytest.importorskip("trimesh")

from backend.export import ply_bytes, write_mask_files  # noqa: E402
from backend.labels import CAT, LABEL_IDS  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FACE, EAR, MOUTH, EYES = (CAT.ids[n] for n in ("face", "ear", "mouth", "eyes"))
EAR_DIRS = ((-0.5, 0.0, 0.85), (0.5, 0.0, 0.85))
EYE_DIRS = ((-0.35, -0.9, 0.25), (0.35, -0.9, 0.25))
MOUTH_DIR = (0.0, -0.95, -0.3)


@pytest.fixture(scope="module")
def crs():
    spec = importlib.util.spec_from_file_location("check_real_sketches", ROOT / "benchmarks" / "check_real_sketches.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def sphere():
    """A 0.24 m wide head: icosphere (2562 vertices) with unit directions per vertex."""
    m = trimesh.creation.icosphere(subdivisions=4, radius=0.12)
    v = np.asarray(m.vertices)
    return v, np.asarray(m.faces), v / np.linalg.norm(v, axis=1, keepdims=True)


def _cap(dirs: np.ndarray, towards, degrees: float) -> np.ndarray:
    d = np.asarray(towards, float) / np.linalg.norm(towards)
    return dirs @ d >= np.cos(np.radians(degrees))


def _cat_labels(dirs: np.ndarray) -> np.ndarray:
    """Face everywhere, two ear caps (20 deg), two eye caps (12 deg), a mouth cap (15 deg) and one lone ear
    vertex at the back (a crumb the criteria ignore)."""
    labels = np.full(len(dirs), FACE, np.uint8)
    for d in EAR_DIRS:
        labels[_cap(dirs, d, 20)] = EAR
    for d in EYE_DIRS:
        labels[_cap(dirs, d, 12)] = EYES
    labels[_cap(dirs, MOUTH_DIR, 15)] = MOUTH
    labels[np.argmax(dirs[:, 1])] = EAR
    return labels


def _job(out: Path, vertices, faces, labels, kept=0.99) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    (out / "mesh.ply").write_bytes(ply_bytes(vertices, faces, np.full((len(vertices), 3), 0.5), labels))
    return {"mesh": {"kept_face_fraction": kept}}


def test_one_piece_cat_with_two_ears_two_eyes_and_a_muzzle_passes(crs, sphere, tmp_path):
    v, f, dirs = sphere
    c = crs.check_cat(_job(tmp_path, v, f, _cat_labels(dirs)), tmp_path)
    assert c["ok"] and c["failed"] == []
    assert c["ear_pieces"] == 2 and c["eye_pieces"] == 2 and c["mouth_vertices"] >= crs.MIN_MOUTH_VERTICES
    assert c["width_m"] == pytest.approx(0.24, abs=0.002) and c["main_component"] == pytest.approx(0.99)


def test_one_ear_relabelled_face_fails(crs, sphere, tmp_path):
    v, f, dirs = sphere
    labels = _cat_labels(dirs)
    labels[_cap(dirs, EAR_DIRS[0], 20)] = FACE
    c = crs.check_cat(_job(tmp_path, v, f, labels), tmp_path)
    assert not c["ok"] and c["failed"] == ["ears"] and c["ear_pieces"] == 1


def test_eyes_merged_into_one_piece_fail(crs, sphere, tmp_path):
    v, f, dirs = sphere
    labels = _cat_labels(dirs)
    bridge = (np.abs(dirs[:, 0]) < 0.4) & (np.abs(dirs[:, 2] - 0.25) < 0.08) & (dirs[:, 1] < 0)
    labels[bridge] = EYES
    c = crs.check_cat(_job(tmp_path, v, f, labels), tmp_path)
    assert not c["ok"] and c["failed"] == ["eyes"] and c["eye_pieces"] == 1


def test_absent_mouth_fails(crs, sphere, tmp_path):
    v, f, dirs = sphere
    labels = _cat_labels(dirs)
    labels[labels == MOUTH] = FACE
    c = crs.check_cat(_job(tmp_path, v, f, labels), tmp_path)
    assert not c["ok"] and c["failed"] == ["muzzle"] and c["mouth_vertices"] == 0


def test_third_ear_piece_size_and_main_component_fail(crs, sphere, tmp_path):
    v, f, dirs = sphere
    labels = _cat_labels(dirs)
    labels[_cap(dirs, (0.0, 0.0, -1.0), 20)] = EAR
    assert crs.check_cat(_job(tmp_path / "a", v, f, labels), tmp_path / "a")["failed"] == ["ears"]
    good = _cat_labels(dirs)
    assert crs.check_cat(_job(tmp_path / "b", 2 * v, f, good), tmp_path / "b")["failed"] == ["width"]
    assert crs.check_cat(_job(tmp_path / "c", v, f, good, kept=0.9), tmp_path / "c")["failed"] == ["main_component"]


def test_label_pieces_ignores_crumbs_and_counts_lone_vertices(crs):
    faces = np.array([[0, 1, 2], [1, 2, 3], [4, 5, 6]])
    labels = np.array([EAR, EAR, EAR, EAR, EAR, EAR, FACE, EAR])  # 0-3 one piece; 4, 5, 7 no ear face
    assert crs.label_pieces(labels, faces, EAR, min_share=0.0) == [4, 1, 1, 1]
    assert crs.label_pieces(labels, faces, EAR) == [4, 1, 1, 1]  # each lone vertex is 1/7 > 5 %
    assert crs.label_pieces(labels, faces, EAR, min_share=0.2) == [4]
    assert crs.label_pieces(labels, faces, EYES) == []


def test_human_path_keeps_the_human_criteria_and_line(crs, sphere, tmp_path):
    v, f, dirs = sphere
    labels = np.where(dirs[:, 2] < -0.8, LABEL_IDS["neck"], LABEL_IDS["skin"]).astype(np.uint8)
    counts = {"skin": 900, "hair": 500, "l_eye": 30, "nose": 40, "u_lip": 20, "neck": 50}
    result = {"mesh": {"kept_face_fraction": 0.97}, "class_vertex_counts": counts,
              "bbox_m": {"size": [0.24, 0.24, 0.24]}, "timings_s": {"total": 1.25}, "framing": {"method": "auto"}}
    _job(tmp_path, v, f, labels)
    assert crs.REQUIRED == {"skin": ("skin",), "hair": ("hair",), "eyes": ("l_eye", "r_eye"), "nose": ("nose",),
                            "lips": ("u_lip", "l_lip")}
    c = crs.check(result, tmp_path)
    assert c["ok"] and c["missing"] == [] and set(c) == {"main_component", "width_m", "mesh_width_m", "missing", "ok"}
    del counts["nose"]
    c = crs.check(result, tmp_path)
    assert not c["ok"] and c["missing"] == ["nose"]
    old = (f"{'a.png':<28} {'ok  ' if c['ok'] else 'FAIL'} main component {c['main_component']:.1%}, "
           f"head width {c['width_m']:.3f} m, mesh bbox {' x '.join(f'{x:.3f}' for x in result['bbox_m']['size'])} m, "
           f"missing {c['missing'] or 'none'}, {result['timings_s']['total']:.1f} s, "
           f"framing {result['framing']['method']}")  # the human line, written out
    assert crs.report_line("a.png", c, result, "human") == old
    assert "ear pieces" in crs.report_line("a.png", crs.check_cat(_job(tmp_path, v, f, _cat_labels(dirs)), tmp_path),
                                           result, "cat")


def test_sheet_mask_tile_in_the_cat_palette(crs, tmp_path):
    mask = np.zeros((64, 64), np.uint8)
    mask[16:48, 16:48] = EAR
    write_mask_files(tmp_path, mask, CAT)
    tile = crs.sheet_row(tmp_path, tile=32)[:, 32:64]
    assert (tile[16, 16] == CAT.palette[EAR]).all() and (tile[1, 1] == CAT.palette[0]).all()


def test_missing_cat_weights_named_without_traceback(crs, tmp_path, capsys):
    pytest.importorskip("torch")
    (tmp_path / "in").mkdir()
    rc = crs.main([str(tmp_path / "in"), "--out-dir", str(tmp_path / "out"), "--subject", "cat",
                   "--weights", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and "weights_missing" in err and "mask2triplane_cat_lite" in err
