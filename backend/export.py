"""Job outputs (docs/contracts.md section 6), every file written atomically (temporary name + rename).

* ``mesh.ply``: binary little endian; vertex ``x y z`` float32 metres, ``red green blue`` uchar sRGB,
  ``label`` uchar (the job's label set's id: CelebAMask-HQ, or seg2cat for cats); face ``vertex_indices`` list uchar int32. Blender's PLY importer
  keeps the colours exact (docs/design.md section 5).
* ``mesh.glb``: glTF 2.0 binary; POSITION, NORMAL, COLOR_0 as **linear** float RGB (glTF colours are
  linear, and Blender reads byte colours as linear, so floats are the exact path), ``_LABEL`` float
  scalar (glTF custom attribute), one material whose base colour is multiplied by COLOR_0.
* ``mesh.obj``: ``v x y z r g b`` with sRGB colours in [0, 1] (the common vertex-colour extension).
* with a texture (``texture`` option, backend/texture.py): ``texture.png`` (sRGB), ``mesh.mtl``
  (``map_Kd texture.png``), ``vt`` lines and ``f v/vt`` faces in ``mesh.obj``; ``mesh.glb`` with
  ``TEXCOORD_0`` and an embedded ``baseColorTexture`` (vertex colours then in ``COLOR_1``); ``mesh.ply``
  split at the UV seams with ``s`` ``t`` vertex properties.
* ``mask.png`` (label ids, mode L), ``mask_color.png`` (the label set's palette), ``views/<name>.png``.
* ``result.json``.
"""
from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import numpy as np

from backend.labels import CELEBAMASK_HQ, LabelSet
from backend.colorspace import linear_to_srgb
from backend.weights import atomic_write_bytes, atomic_write_text

SUPPORTED_FORMATS = ("ply", "glb", "obj")


def srgb_bytes(linear_rgb: np.ndarray) -> np.ndarray:
    """Linear float colours ``(..., 3)`` in [0, 1] -> sRGB uint8 ``(..., 3)``."""
    return np.round(linear_to_srgb(linear_rgb) * 255.0).astype(np.uint8)


_PLY_TYPES = {"float": "<f4", "uchar": "u1", "int": "<i4"}


def _ply_vertex_dtype(with_uv: bool) -> np.dtype:
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1"),
              ("label", "u1")]
    return np.dtype(fields + ([("s", "<f4"), ("t", "<f4")] if with_uv else []))


def ply_bytes(vertices: np.ndarray, faces: np.ndarray, rgb_linear: np.ndarray, labels: np.ndarray,
              uv: np.ndarray | None = None) -> bytes:
    """Binary little-endian PLY of a coloured, labelled mesh.

    Args:
        vertices: ``(V, 3)`` metres; faces: ``(F, 3)`` int; rgb_linear: ``(V, 3)`` float linear [0, 1];
        labels: ``(V,)`` int label ids 0..18; uv: optional ``(V, 2)`` float texture coordinates (OBJ
        convention), written as the vertex properties ``s`` ``t`` that trimesh and Blender's PLY importer
        read as a UV map (the vertices must then be split at the UV seams; Blender's ``merge_verts``
        import option welds them again and keeps the UVs per face corner).
    """
    nv, nf = len(vertices), len(faces)
    v = np.empty(nv, dtype=_ply_vertex_dtype(uv is not None))
    v["x"], v["y"], v["z"] = (vertices[:, i].astype(np.float32) for i in range(3))
    c = srgb_bytes(rgb_linear)
    v["red"], v["green"], v["blue"] = c[:, 0], c[:, 1], c[:, 2]
    v["label"] = np.asarray(labels, dtype=np.uint8)
    if uv is not None:
        v["s"], v["t"] = np.asarray(uv[:, 0], np.float32), np.asarray(uv[:, 1], np.float32)
    fdt = np.dtype([("n", "u1"), ("i", "<i4", (3,))])
    f = np.empty(nf, dtype=fdt)
    f["n"] = 3
    f["i"] = faces.astype(np.int32)
    header = (
        "ply\nformat binary_little_endian 1.0\ncomment S3D for Blender: metres, Z up, face towards -Y; "
        "colours sRGB; label = CelebAMask-HQ class id\n"
        f"element vertex {nv}\nproperty float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\nproperty uchar label\n"
        + ("property float s\nproperty float t\n" if uv is not None else "")
        + f"element face {nf}\nproperty list uchar int vertex_indices\nend_header\n"
    )
    return header.encode("ascii") + v.tobytes() + f.tobytes()


def read_ply(data: bytes) -> dict[str, np.ndarray]:
    """Read a PLY written by :func:`ply_bytes`: ``{"vertices", "rgb" (uint8 sRGB), "label", "faces"}``, and
    ``"uv"`` ``(V, 2)`` float32 when it has ``s`` ``t`` properties.

    Raises:
        ValueError: a PLY with another layout.
    """
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode("ascii").splitlines()
    nv = next(int(h.split()[-1]) for h in header if h.startswith("element vertex"))
    nf = next(int(h.split()[-1]) for h in header if h.startswith("element face"))
    if "property uchar label" not in header or "format binary_little_endian 1.0" not in header:
        raise ValueError("not an S3D mesh.ply (binary little endian with a 'label' vertex property)")
    with_uv = "property float s" in header
    vdt = _ply_vertex_dtype(with_uv)
    fdt = np.dtype([("n", "u1"), ("i", "<i4", (3,))])
    v = np.frombuffer(data, dtype=vdt, count=nv, offset=end)
    f = np.frombuffer(data, dtype=fdt, count=nf, offset=end + nv * vdt.itemsize)
    out = {"vertices": np.stack([v["x"], v["y"], v["z"]], 1), "rgb": np.stack([v["red"], v["green"], v["blue"]], 1),
           "label": v["label"].copy(), "faces": f["i"].astype(np.int64)}
    if with_uv:
        out["uv"] = np.stack([v["s"], v["t"]], 1)
    return out


def _glb_container(attributes: dict[str, np.ndarray], indices: np.ndarray, material: dict,
                   image_png: bytes | None = None) -> bytes:
    """A GLB of one triangle primitive: ``attributes`` name -> ``(N, k)`` float32 / ``(N,)`` float32 arrays
    (``POSITION`` first: its min / max are recorded), ``indices (F * 3,)`` uint32, one material, and
    optionally one PNG image as texture 0 (bufferView with ``mimeType`` image/png)."""
    kinds = {1: "SCALAR", 2: "VEC2", 3: "VEC3", 4: "VEC4"}
    blob, views, accessors = b"", [], []

    def add_view(data: bytes, target: int | None) -> int:
        nonlocal blob
        view = {"buffer": 0, "byteOffset": len(blob), "byteLength": len(data)}
        if target is not None:
            view["target"] = target
        views.append(view)
        blob += data + b"\0" * (-len(data) % 4)
        return len(views) - 1

    attr_index = {}
    for name, arr in attributes.items():
        arr = np.ascontiguousarray(arr, np.float32)
        acc = {"bufferView": add_view(arr.tobytes(), 34962), "componentType": 5126, "count": int(len(arr)),
               "type": kinds[1 if arr.ndim == 1 else arr.shape[1]]}
        if name == "POSITION":
            acc.update(min=arr.min(0).tolist(), max=arr.max(0).tolist())
        accessors.append(acc)
        attr_index[name] = len(accessors) - 1
    idx = np.ascontiguousarray(indices, np.uint32)
    accessors.append({"bufferView": add_view(idx.tobytes(), 34963), "componentType": 5125, "count": int(idx.size),
                      "type": "SCALAR"})
    gltf = {
        "asset": {"version": "2.0", "generator": "S3D for Blender"},
        "scene": 0, "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0, "name": "S3D_Head"}],
        "materials": [material],
        "meshes": [{"name": "S3D_Head", "primitives": [{"attributes": attr_index, "indices": len(accessors) - 1,
                                                       "material": 0}]}],
    }
    if image_png is not None:
        gltf["images"] = [{"bufferView": add_view(image_png, None), "mimeType": "image/png", "name": "texture"}]
        gltf["samplers"] = [{"magFilter": 9729, "minFilter": 9987, "wrapS": 33071, "wrapT": 33071}]
        gltf["textures"] = [{"sampler": 0, "source": 0}]
    gltf.update(buffers=[{"byteLength": len(blob)}], bufferViews=views, accessors=accessors)
    js = json.dumps(gltf, separators=(",", ":")).encode("utf-8")
    js += b" " * (-len(js) % 4)
    total = 12 + 8 + len(js) + 8 + len(blob)
    return (struct.pack("<4sII", b"glTF", 2, total) + struct.pack("<I4s", len(js), b"JSON") + js
            + struct.pack("<I4s", len(blob), b"BIN\0") + blob)


def _to_gltf(a: np.ndarray) -> np.ndarray:
    """Head frame (Z up, face towards -Y) -> glTF (Y up): (x, y, z) -> (x, z, -y), as Blender's importer
    undoes it, so the head imports upright."""
    a = np.asarray(a, np.float32)
    return np.stack([a[:, 0], a[:, 2], -a[:, 1]], axis=1)


def glb_bytes(vertices: np.ndarray, faces: np.ndarray, rgb_linear: np.ndarray, labels: np.ndarray,
              normals: np.ndarray, atlas=None, texture_png: bytes | None = None) -> bytes:
    """glTF 2.0 binary (GLB) with linear float vertex colours, normals and a ``_LABEL`` attribute.

    With an ``atlas`` (backend.texture.Atlas) and its ``texture_png``: the vertices are split at the
    atlas's seams, ``TEXCOORD_0`` holds the UVs (glTF's v down) and the material's
    ``baseColorTexture`` is the embedded PNG; the vertex colours move from ``COLOR_0`` (which glTF
    multiplies into the base colour, darkening the texture) to ``COLOR_1`` (linear float RGB, not used by
    the material). Not a custom ``_COLOR``: Blender 5.0.1's glTF importer pairs custom attributes with
    their arrays through a set, so two of different sizes (``_COLOR``, ``_LABEL``) fail or swap.
    """
    col = np.clip(np.asarray(rgb_linear, np.float32), 0, 1)
    lab = np.asarray(labels, np.float32)
    material = {"name": "S3D_VertexColor", "pbrMetallicRoughness": {
        "baseColorFactor": [1, 1, 1, 1], "metallicFactor": 0.0, "roughnessFactor": 0.7}}
    if atlas is None:
        attrs = {"POSITION": _to_gltf(vertices), "NORMAL": _to_gltf(normals), "COLOR_0": col, "_LABEL": lab}
        return _glb_container(attrs, np.asarray(faces).reshape(-1), material)
    m = atlas.vertex_map
    uv = np.stack([atlas.uv[:, 0], 1.0 - atlas.uv[:, 1]], axis=1)
    attrs = {"POSITION": _to_gltf(np.asarray(vertices)[m]), "NORMAL": _to_gltf(np.asarray(normals)[m]),
             "TEXCOORD_0": uv, "COLOR_1": col[m], "_LABEL": lab[m]}
    material = dict(material, name="S3D_Texture")
    material["pbrMetallicRoughness"] = dict(material["pbrMetallicRoughness"], baseColorTexture={"index": 0})
    return _glb_container(attrs, atlas.faces.reshape(-1), material, texture_png)


def obj_bytes(vertices: np.ndarray, faces: np.ndarray, rgb_linear: np.ndarray, atlas=None,
              mtl_name: str = "mesh.mtl") -> bytes:
    """Wavefront OBJ with ``v x y z r g b`` (sRGB in [0, 1]) and 1-based triangle faces; with an
    ``atlas`` (backend.texture.Atlas) also ``mtllib`` / ``usemtl`` of ``mtl_name``, ``vt u v`` lines and
    faces ``f v/vt ...`` (the positions stay shared, so the mesh stays closed)."""
    c = linear_to_srgb(rgb_linear)
    buf = io.StringIO()
    buf.write("# S3D for Blender: metres, Z up, face towards -Y; vertex colours sRGB\n")
    if atlas is not None:
        buf.write(f"mtllib {mtl_name}\n")
    buf.write("o S3D_Head\n")
    np.savetxt(buf, np.hstack([vertices, c]), fmt="v %.6f %.6f %.6f %.4f %.4f %.4f")
    if atlas is None:
        np.savetxt(buf, faces + 1, fmt="f %d %d %d")
    else:
        np.savetxt(buf, atlas.uv, fmt="vt %.6f %.6f")
        buf.write("usemtl S3D_Texture\n")
        fv = np.stack([np.asarray(faces), atlas.faces], axis=2).reshape(-1, 6) + 1
        np.savetxt(buf, fv, fmt="f %d/%d %d/%d %d/%d")
    return buf.getvalue().encode("ascii")


def mtl_bytes(texture_name: str = "texture.png") -> bytes:
    """The OBJ's material file: one material ``S3D_Texture`` whose diffuse colour map is ``texture_name``."""
    return ("# S3D for Blender\nnewmtl S3D_Texture\nKa 0 0 0\nKd 1 1 1\nKs 0 0 0\nNs 10\nillum 1\n"
            f"map_Kd {texture_name}\n").encode("ascii")


def png_bytes(image: np.ndarray) -> bytes:
    """PNG of an ``(H, W)`` or ``(H, W, 3|4)`` uint8 image (RGB order)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def write_mesh_files(out_dir: Path, formats: list[str], vertices: np.ndarray, faces: np.ndarray,
                     rgb_linear: np.ndarray, labels: np.ndarray, normals: np.ndarray, texture=None) -> list[str]:
    """Write ``mesh.<fmt>`` for every format; return the written relative paths.

    Args:
        texture: None, or ``(atlas, image)`` from ``backend.texture.texture_for`` (``image`` ``(S, S, 3)``
            uint8 sRGB): then ``texture.png`` is written, ``mesh.obj`` gets UVs and ``mesh.mtl``,
            ``mesh.glb`` embeds the image as its base colour texture and ``mesh.ply`` gets ``s`` ``t`` UVs
            with its vertices split at the UV seams (PLY has only per-vertex properties; docs/mesh.md).

    Raises:
        ValueError: an unknown format.
    """
    written = []
    atlas, png = (None, None) if texture is None else (texture[0], png_bytes(texture[1]))
    if png is not None:
        atomic_write_bytes(out_dir / "texture.png", png)
        written.append("texture.png")
    for fmt in formats:
        if fmt == "ply" and atlas is not None:  # split at the UV seams, with s t (docs/mesh.md)
            m = atlas.vertex_map
            atomic_write_bytes(out_dir / "mesh.ply", ply_bytes(vertices[m], atlas.faces, rgb_linear[m], labels[m],
                                                               atlas.uv))
        elif fmt == "ply":
            atomic_write_bytes(out_dir / "mesh.ply", ply_bytes(vertices, faces, rgb_linear, labels))
        elif fmt == "glb":
            atomic_write_bytes(out_dir / "mesh.glb", glb_bytes(vertices, faces, rgb_linear, labels, normals,
                                                               atlas, png))
        elif fmt == "obj":
            if atlas is not None:
                atomic_write_bytes(out_dir / "mesh.mtl", mtl_bytes("texture.png"))
                written.append("mesh.mtl")
            atomic_write_bytes(out_dir / "mesh.obj", obj_bytes(vertices, faces, rgb_linear, atlas))
        else:
            raise ValueError(f"unknown mesh format {fmt!r}; choose from {', '.join(SUPPORTED_FORMATS)}")
        written.append(f"mesh.{fmt}")
    return written


def write_mask_files(out_dir: Path, mask_ids: np.ndarray, labels: LabelSet | None = None) -> list[str]:
    """Write ``mask.png`` (ids, mode L) and ``mask_color.png`` (the palette of ``labels``, default
    CelebAMask-HQ's; seg2cat's for cat jobs); return their names."""
    atomic_write_bytes(out_dir / "mask.png", png_bytes(mask_ids.astype(np.uint8)))
    atomic_write_bytes(out_dir / "mask_color.png", png_bytes((labels or CELEBAMASK_HQ).colorize(mask_ids)))
    return ["mask.png", "mask_color.png"]


def write_view_files(out_dir: Path, views: dict[str, np.ndarray]) -> list[str]:
    """Write ``views/<name>.png`` for each ``(R, R, 3|4)`` uint8 image; return the relative paths."""
    (out_dir / "views").mkdir(parents=True, exist_ok=True)
    names = []
    for name, img in views.items():
        atomic_write_bytes(out_dir / "views" / f"{name}.png", png_bytes(img))
        names.append(f"views/{name}.png")
    return names


def write_result(out_dir: Path, result: dict) -> str:
    """Write ``result.json`` (last, so its presence means the job's files are complete)."""
    atomic_write_text(out_dir / "result.json", json.dumps(result, indent=2) + "\n")
    return "result.json"
