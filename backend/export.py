"""Job outputs (docs/contracts.md section 6), every file written atomically (temporary name + rename).

* ``mesh.ply``: binary little endian; vertex ``x y z`` float32 metres, ``red green blue`` uchar sRGB,
  ``label`` uchar (CelebAMask-HQ id); face ``vertex_indices`` list uchar int32. Blender's PLY importer
  keeps the colours exact (docs/design.md section 5).
* ``mesh.glb``: glTF 2.0 binary; POSITION, NORMAL, COLOR_0 as **linear** float RGB (glTF colours are
  linear, and Blender reads byte colours as linear, so floats are the exact path), ``_LABEL`` float
  scalar (glTF custom attribute), one material whose base colour is multiplied by COLOR_0.
* ``mesh.obj``: ``v x y z r g b`` with sRGB colours in [0, 1] (the common vertex-colour extension).
* ``mask.png`` (label ids, mode L), ``mask_color.png`` (CelebAMask-HQ palette), ``views/<name>.png``.
* ``result.json``.
"""
from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import numpy as np

from backend.labels import colorize
from backend.colorspace import linear_to_srgb
from backend.weights import atomic_write_bytes, atomic_write_text

SUPPORTED_FORMATS = ("ply", "glb", "obj")


def srgb_bytes(linear_rgb: np.ndarray) -> np.ndarray:
    """Linear float colours ``(..., 3)`` in [0, 1] -> sRGB uint8 ``(..., 3)``."""
    return np.round(linear_to_srgb(linear_rgb) * 255.0).astype(np.uint8)


def ply_bytes(vertices: np.ndarray, faces: np.ndarray, rgb_linear: np.ndarray, labels: np.ndarray) -> bytes:
    """Binary little-endian PLY of a coloured, labelled mesh.

    Args:
        vertices: ``(V, 3)`` metres; faces: ``(F, 3)`` int; rgb_linear: ``(V, 3)`` float linear [0, 1];
        labels: ``(V,)`` int label ids 0..18.
    """
    nv, nf = len(vertices), len(faces)
    vdt = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1"),
                    ("label", "u1")])
    v = np.empty(nv, dtype=vdt)
    v["x"], v["y"], v["z"] = (vertices[:, i].astype(np.float32) for i in range(3))
    c = srgb_bytes(rgb_linear)
    v["red"], v["green"], v["blue"] = c[:, 0], c[:, 1], c[:, 2]
    v["label"] = np.asarray(labels, dtype=np.uint8)
    fdt = np.dtype([("n", "u1"), ("i", "<i4", (3,))])
    f = np.empty(nf, dtype=fdt)
    f["n"] = 3
    f["i"] = faces.astype(np.int32)
    header = (
        "ply\nformat binary_little_endian 1.0\ncomment S3D for Blender: metres, Z up, face towards -Y; "
        "colours sRGB; label = CelebAMask-HQ class id\n"
        f"element vertex {nv}\nproperty float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\nproperty uchar label\n"
        f"element face {nf}\nproperty list uchar int vertex_indices\nend_header\n"
    )
    return header.encode("ascii") + v.tobytes() + f.tobytes()


def read_ply(data: bytes) -> dict[str, np.ndarray]:
    """Read a PLY written by :func:`ply_bytes`: ``{"vertices", "rgb" (uint8 sRGB), "label", "faces"}``.

    Raises:
        ValueError: a PLY with another layout.
    """
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode("ascii").splitlines()
    nv = next(int(h.split()[-1]) for h in header if h.startswith("element vertex"))
    nf = next(int(h.split()[-1]) for h in header if h.startswith("element face"))
    if "property uchar label" not in header or "format binary_little_endian 1.0" not in header:
        raise ValueError("not an S3D mesh.ply (binary little endian with a 'label' vertex property)")
    vdt = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1"),
                    ("label", "u1")])
    fdt = np.dtype([("n", "u1"), ("i", "<i4", (3,))])
    v = np.frombuffer(data, dtype=vdt, count=nv, offset=end)
    f = np.frombuffer(data, dtype=fdt, count=nf, offset=end + nv * vdt.itemsize)
    return {"vertices": np.stack([v["x"], v["y"], v["z"]], 1), "rgb": np.stack([v["red"], v["green"], v["blue"]], 1),
            "label": v["label"].copy(), "faces": f["i"].astype(np.int64)}


def glb_bytes(vertices: np.ndarray, faces: np.ndarray, rgb_linear: np.ndarray, labels: np.ndarray,
              normals: np.ndarray) -> bytes:
    """glTF 2.0 binary (GLB) with linear float vertex colours, normals and a ``_LABEL`` attribute.

    glTF is Y up and looks along -Z; the canonical frame (Z up, face towards -Y) is converted with the
    same axis swap Blender's importer undoes (x, y, z) -> (x, z, -y), so the head imports upright.
    """
    def to_gltf(a: np.ndarray) -> np.ndarray:
        a = np.asarray(a, np.float32)
        return np.stack([a[:, 0], a[:, 2], -a[:, 1]], axis=1)

    pos = to_gltf(vertices)
    nrm = to_gltf(normals)
    col = np.clip(np.asarray(rgb_linear, np.float32), 0, 1)
    lab = np.asarray(labels, np.float32)
    idx = np.asarray(faces, np.uint32).reshape(-1)
    chunks = [pos.tobytes(), nrm.tobytes(), col.tobytes(), lab.tobytes(), idx.tobytes()]
    offsets, blob = [], b""
    for c in chunks:
        offsets.append(len(blob))
        blob += c + b"\0" * (-len(c) % 4)
    nv = len(pos)
    gltf = {
        "asset": {"version": "2.0", "generator": "S3D for Blender"},
        "scene": 0, "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0, "name": "S3D_Head"}],
        "materials": [{"name": "S3D_VertexColor", "pbrMetallicRoughness": {
            "baseColorFactor": [1, 1, 1, 1], "metallicFactor": 0.0, "roughnessFactor": 0.7}}],
        "meshes": [{"name": "S3D_Head", "primitives": [{
            "attributes": {"POSITION": 0, "NORMAL": 1, "COLOR_0": 2, "_LABEL": 3}, "indices": 4, "material": 0}]}],
        "buffers": [{"byteLength": len(blob)}],
        "bufferViews": [
            {"buffer": 0, "byteOffset": offsets[0], "byteLength": len(chunks[0]), "target": 34962},
            {"buffer": 0, "byteOffset": offsets[1], "byteLength": len(chunks[1]), "target": 34962},
            {"buffer": 0, "byteOffset": offsets[2], "byteLength": len(chunks[2]), "target": 34962},
            {"buffer": 0, "byteOffset": offsets[3], "byteLength": len(chunks[3]), "target": 34962},
            {"buffer": 0, "byteOffset": offsets[4], "byteLength": len(chunks[4]), "target": 34963},
        ],
        "accessors": [
            {"bufferView": 0, "componentType": 5126, "count": nv, "type": "VEC3",
             "min": pos.min(0).tolist(), "max": pos.max(0).tolist()},
            {"bufferView": 1, "componentType": 5126, "count": nv, "type": "VEC3"},
            {"bufferView": 2, "componentType": 5126, "count": nv, "type": "VEC3"},
            {"bufferView": 3, "componentType": 5126, "count": nv, "type": "SCALAR"},
            {"bufferView": 4, "componentType": 5125, "count": int(idx.size), "type": "SCALAR"},
        ],
    }
    js = json.dumps(gltf, separators=(",", ":")).encode("utf-8")
    js += b" " * (-len(js) % 4)
    total = 12 + 8 + len(js) + 8 + len(blob)
    return (struct.pack("<4sII", b"glTF", 2, total) + struct.pack("<I4s", len(js), b"JSON") + js
            + struct.pack("<I4s", len(blob), b"BIN\0") + blob)


def obj_bytes(vertices: np.ndarray, faces: np.ndarray, rgb_linear: np.ndarray) -> bytes:
    """Wavefront OBJ with ``v x y z r g b`` (sRGB in [0, 1]) and 1-based triangle faces."""
    c = linear_to_srgb(rgb_linear)
    buf = io.StringIO()
    buf.write("# S3D for Blender: metres, Z up, face towards -Y; vertex colours sRGB\no S3D_Head\n")
    np.savetxt(buf, np.hstack([vertices, c]), fmt="v %.6f %.6f %.6f %.4f %.4f %.4f")
    np.savetxt(buf, faces + 1, fmt="f %d %d %d")
    return buf.getvalue().encode("ascii")


def png_bytes(image: np.ndarray) -> bytes:
    """PNG of an ``(H, W)`` or ``(H, W, 3|4)`` uint8 image (RGB order)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def write_mesh_files(out_dir: Path, formats: list[str], vertices: np.ndarray, faces: np.ndarray,
                     rgb_linear: np.ndarray, labels: np.ndarray, normals: np.ndarray) -> list[str]:
    """Write ``mesh.<fmt>`` for every format; return the written relative paths.

    Raises:
        ValueError: an unknown format.
    """
    written = []
    for fmt in formats:
        if fmt == "ply":
            atomic_write_bytes(out_dir / "mesh.ply", ply_bytes(vertices, faces, rgb_linear, labels))
        elif fmt == "glb":
            atomic_write_bytes(out_dir / "mesh.glb", glb_bytes(vertices, faces, rgb_linear, labels, normals))
        elif fmt == "obj":
            atomic_write_bytes(out_dir / "mesh.obj", obj_bytes(vertices, faces, rgb_linear))
        else:
            raise ValueError(f"unknown mesh format {fmt!r}; choose from {', '.join(SUPPORTED_FORMATS)}")
        written.append(f"mesh.{fmt}")
    return written


def write_mask_files(out_dir: Path, mask_ids: np.ndarray) -> list[str]:
    """Write ``mask.png`` (ids, mode L) and ``mask_color.png`` (palette); return their names."""
    atomic_write_bytes(out_dir / "mask.png", png_bytes(mask_ids.astype(np.uint8)))
    atomic_write_bytes(out_dir / "mask_color.png", png_bytes(colorize(mask_ids)))
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
