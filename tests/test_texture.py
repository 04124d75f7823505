"""The ``texture`` option: UV atlas, baked texture.png, OBJ + MTL and GLB with the texture (issue 39)."""
from __future__ import annotations

import numpy as np
import pytest
import trimesh

from backend.export import ply_bytes, srgb_bytes, write_mesh_files
from backend.texture import PADDING, texture_for, unwrap

SIZE = 512


def _head():
    """A closed bumpy sphere (radius about 0.1 m) with a smooth colour field, linear RGB."""
    m = trimesh.creation.icosphere(subdivisions=4, radius=0.1)
    v = m.vertices * (1.0 + 0.15 * np.sin(3 * m.vertices[:, [2]] / 0.1))
    m = trimesh.Trimesh(v, m.faces, process=False)
    c = 0.5 + 0.4 * np.stack([np.sin(v[:, 0] / 0.05), np.cos(v[:, 1] / 0.07), np.sin(v[:, 2] / 0.06)], axis=1)
    return m, c


def _texel_at(image: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Texels under UVs ``(N, 2)`` (OBJ convention: v up) of an ``(S, S, 3)`` image (row 0 at the top)."""
    s = image.shape[0]
    col = np.clip((uv[:, 0] * s).astype(int), 0, s - 1)
    row = np.clip(((1.0 - uv[:, 1]) * s).astype(int), 0, s - 1)
    return image[row, col].astype(int)


def test_atlas_charts_do_not_overlap_and_stay_in_the_unit_square():
    from backend.texture import _charts, _face_groups, _texel_hits

    m, _ = _head()
    atlas = unwrap(m.vertices, m.faces, m.vertex_normals, SIZE)
    assert atlas.uv.min() >= 0.0 and atlas.uv.max() <= 1.0
    assert np.array_equal(m.vertices[atlas.vertex_map][atlas.faces], m.vertices[m.faces])  # same triangles
    tri = atlas.uv[atlas.faces].astype(np.float64)
    signed = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    assert (signed > 0).all()  # no face mirrored or folded over in its chart
    assert 0.3 < 0.5 * signed.sum() < 1.0  # the charts fill a fair part of the square
    # no texel centre lies in faces of two different charts, nor within PADDING - 1 texels of another chart
    _, chart = _charts(m.faces, _face_groups(m.vertices, m.faces, m.vertex_normals))
    px = np.stack([atlas.uv[:, 0] * SIZE, (1.0 - atlas.uv[:, 1]) * SIZE], axis=1).astype(np.float64)
    faces, xy, _ = _texel_hits(px[atlas.faces])
    owner = np.full((SIZE, SIZE), -1)
    owner[xy[:, 1], xy[:, 0]] = chart[faces]
    assert (owner[xy[:, 1], xy[:, 0]] == chart[faces]).all()
    assert atlas.charts == chart.max() + 1 >= 6 and PADDING >= 1


def test_texels_at_a_vertex_carry_that_vertex_colour():
    m, colours = _head()
    atlas, image = texture_for(m.vertices, m.faces, m.vertex_normals, colours, SIZE)
    assert image.shape == (SIZE, SIZE, 3) and image.dtype == np.uint8
    got = _texel_at(image, atlas.uv)
    want = srgb_bytes(colours[atlas.vertex_map]).astype(int)
    err = np.abs(got - want).max(axis=1)
    assert np.median(err) <= 3 and np.percentile(err, 95) <= 10
    # an image flipped upside down (a v convention mix-up) would not match
    flipped = np.abs(_texel_at(image[::-1], atlas.uv) - want).max(axis=1)
    assert np.median(flipped) > 20


def test_every_texel_is_filled_so_seams_do_not_bleed_black():
    m, colours = _head()
    _, image = texture_for(m.vertices, m.faces, m.vertex_normals, colours, 256)
    assert (image.sum(axis=2) > 0).all()


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    m, colours = _head()
    out = tmp_path_factory.mktemp("tex")
    labels = np.ones(len(m.vertices), np.uint8)
    tex = texture_for(m.vertices, m.faces, m.vertex_normals, colours, SIZE)
    files = write_mesh_files(out, ["ply", "obj", "glb"], m.vertices, m.faces, colours, labels, m.vertex_normals, tex)
    return out, files, m, colours, labels, tex


def test_obj_has_uvs_and_a_material_with_the_texture(written):
    out, files, m, _, _, (atlas, _) = written
    assert set(files) == {"texture.png", "mesh.ply", "mesh.obj", "mesh.mtl", "mesh.glb"}
    text = (out / "mesh.obj").read_text()
    assert "mtllib mesh.mtl" in text and "usemtl S3D_Texture" in text
    assert sum(line.startswith("vt ") for line in text.splitlines()) == len(atlas.uv)
    assert sum(line.startswith("v ") for line in text.splitlines()) == len(m.vertices)  # positions stay shared
    assert "map_Kd texture.png" in (out / "mesh.mtl").read_text()
    from PIL import Image

    assert Image.open(out / "texture.png").size == (SIZE, SIZE)
    loaded = trimesh.load(out / "mesh.obj", force="mesh", process=False)
    assert loaded.visual.uv is not None and loaded.visual.material.image.size == (SIZE, SIZE)


def test_glb_loads_in_trimesh_with_uvs_and_the_texture_image(written):
    out, _, m, colours, _, (atlas, image) = written
    glb = trimesh.load(out / "mesh.glb", force="mesh", process=False)
    uv = np.asarray(glb.visual.uv)
    assert uv.shape == (len(atlas.uv), 2)
    img = glb.visual.material.baseColorTexture
    assert img.size == (SIZE, SIZE)
    # trimesh gives UVs in the OBJ convention: the texel under each vertex is that vertex's colour
    got = _texel_at(np.asarray(img.convert("RGB")), uv)
    want = srgb_bytes(colours[atlas.vertex_map]).astype(int)
    assert np.median(np.abs(got - want).max(axis=1)) <= 3


def test_glb_keeps_vertex_colours_and_labels_as_attributes(written):
    import json
    import struct

    out = written[0]
    data = (out / "mesh.glb").read_bytes()
    (js_len,) = struct.unpack("<I", data[12:16])
    doc = json.loads(data[20:20 + js_len])
    attrs = doc["meshes"][0]["primitives"][0]["attributes"]
    # COLOR_0 would multiply into the texture; one custom attribute only (Blender's importer mixes up two)
    assert {"POSITION", "NORMAL", "TEXCOORD_0", "COLOR_1", "_LABEL"} <= set(attrs) and "COLOR_0" not in attrs
    assert [a for a in attrs if a.startswith("_")] == ["_LABEL"]
    assert doc["materials"][0]["pbrMetallicRoughness"]["baseColorTexture"] == {"index": 0}
    assert doc["images"][0]["mimeType"] == "image/png"


def test_ply_gets_st_uvs_split_at_the_seams_and_keeps_colours_and_labels(written):
    from backend.export import read_ply

    out, _, m, colours, labels, (atlas, _) = written
    ply = read_ply((out / "mesh.ply").read_bytes())
    assert np.allclose(ply["uv"], atlas.uv) and len(ply["vertices"]) == len(atlas.uv)
    assert np.allclose(ply["vertices"][ply["faces"]], m.vertices[m.faces], atol=1e-6)
    assert np.array_equal(ply["rgb"], srgb_bytes(colours[atlas.vertex_map]))
    assert np.array_equal(ply["label"], labels[atlas.vertex_map])
    loaded = trimesh.load(out / "mesh.ply", process=False)  # trimesh reads s t as UVs
    assert np.allclose(loaded.visual.uv, atlas.uv)
    # without a texture the PLY keeps its old layout: shared vertices, no s t
    plain = read_ply(ply_bytes(m.vertices, m.faces, colours, labels))
    assert "uv" not in plain and len(plain["vertices"]) == len(m.vertices)


def test_texture_option_validation():
    from backend.errors import PipelineError
    from backend.options import GenerateOptions

    assert GenerateOptions(texture=1024, formats=("ply", "glb")).validate().texture == 1024
    assert GenerateOptions(texture=0).validate().texture == 0
    for bad in (1000, True, "1024", 8192):
        with pytest.raises(PipelineError, match="texture"):
            GenerateOptions(texture=bad, formats=("obj",)).validate()
    with pytest.raises(PipelineError, match="obj or glb"):
        GenerateOptions(texture=1024, formats=("ply",)).validate()
    assert GenerateOptions.from_dict({"texture": 2048, "formats": ["glb"]}).texture == 2048


def test_cli_texture_flag():
    from backend.cli import build_parser

    p = build_parser()
    assert p.parse_args(["generate", "x.png", "--out", "o", "--texture"]).texture == 1024
    assert p.parse_args(["generate", "x.png", "--out", "o", "--texture", "2048"]).texture == 2048
    assert p.parse_args(["generate", "x.png", "--out", "o"]).texture is None


def test_export_stage_writes_the_texture_and_records_it(tmp_path):
    from backend import stages
    from backend.align import FramingTransform  # noqa: F401  (the Mask's transform type)
    from backend.vertex_colors import standard_views

    m, colours = _head()
    head = stages.HeadMesh(m.vertices, m.faces, {}, [], normals=m.vertex_normals,
                           labels=np.ones(len(m.vertices), np.uint8), colours=colours)
    mask = stages.Mask(np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8), None, None, [])
    outputs = stages.export(tmp_path, head, mask, stages.ColourViews(standard_views(4), 1.0), ("ply", "glb"), 32,
                            lambda: None, texture_size=256)
    assert {"texture.png", "mesh.glb", "mesh.ply"} <= set(outputs.files)
    assert outputs.texture["file"] == "texture.png" and outputs.texture["size"] == 256
    none = stages.export(tmp_path / "plain", head, mask, stages.ColourViews(standard_views(4), 1.0), ("ply",), 32,
                         lambda: None) if (tmp_path / "plain").mkdir() is None else None
    assert none.texture is None and "texture.png" not in none.files


_BPY_IMPORT = r"""
import json, sys
import bpy
out, res = sys.argv[1], {}
for kind, op in (("glb", lambda p: bpy.ops.import_scene.gltf(filepath=p)),
                 ("obj", lambda p: bpy.ops.wm.obj_import(filepath=p)),
                 ("ply", lambda p: bpy.ops.wm.ply_import(filepath=p, merge_verts=True))):
    bpy.ops.wm.read_factory_settings(use_empty=True)
    op(f"{out}/mesh.{kind}")
    me = [o for o in bpy.context.scene.objects if o.type == "MESH"][0].data
    images = [n.image.size[:] for m in me.materials if m and m.use_nodes for n in m.node_tree.nodes
              if n.type == "TEX_IMAGE" and n.image]
    res[kind] = {"vertices": len(me.vertices), "uv": [u.name for u in me.uv_layers],
                 "attributes": [a.name for a in me.attributes], "images": [list(i) for i in images]}
print("RESULT " + json.dumps(res))
"""


def test_blender_imports_the_textured_glb_obj_and_ply(written, tmp_path):
    """Blender (bpy 5.0.1, in a subprocess) imports the three textured files with their UV map, the
    texture image for GLB and OBJ, and the labels; the PLY's seam-split vertices weld back."""
    import importlib.util
    import json
    import subprocess
    import sys

    if importlib.util.find_spec("bpy") is None:
        pytest.skip("bpy is not installed (pip install .[dev])")
    out, _, m, _, _, (atlas, _) = written
    script = tmp_path / "import.py"
    script.write_text(_BPY_IMPORT)
    import os

    # Blender's glTF importer iterates custom attribute names as a set: two hash seeds give both orders
    # of two names (as {"_COLOR", "_LABEL"} under seeds 0 and 1), so a second custom attribute would fail
    for seed in ("0", "1"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        r = subprocess.run([sys.executable, str(script), str(out)], capture_output=True, text=True, timeout=300,
                           env=env)
        line = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
        assert r.returncode == 0 and line, r.stderr[-2000:]
    res = json.loads(line[0][7:])
    for kind in ("glb", "obj", "ply"):
        assert "UVMap" in res[kind]["uv"], kind
    assert res["glb"]["images"] == [[SIZE, SIZE]] and res["obj"]["images"] == [[SIZE, SIZE]]
    assert "_LABEL" in res["glb"]["attributes"] and "label" in res["ply"]["attributes"]
    assert res["glb"]["vertices"] == len(atlas.uv)
    assert res["obj"]["vertices"] == res["ply"]["vertices"] == len(m.vertices)
