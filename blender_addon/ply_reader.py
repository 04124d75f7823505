"""A small numpy reader for the binary PLY meshes the backend writes (docs/contracts.md section 6).

The job output ``mesh.ply`` is ``binary_little_endian 1.0`` with ``vertex`` properties ``x y z``
(float32, metres, canonical head frame: Z up, face towards -Y), ``red green blue`` (uchar, sRGB) and
``label`` (uchar, CelebAMask-HQ id), and ``face`` property ``list uchar int vertex_indices``. The reader
accepts any scalar property types and order, big or little endian, and faces of any size (polygons with
more than three corners are split into triangle fans), so a PLY re-saved by another tool still loads.
ASCII PLY is refused with a clear message. Standard library and numpy only (runs in Blender's Python).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

_SCALAR_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}
_MAX_HEADER_BYTES = 64 * 1024


class PlyError(ValueError):
    """A PLY file that this reader cannot load; the message says what is wrong with which file."""


@dataclass
class PlyMesh:
    """A triangle mesh read from PLY.

    Attributes:
        vertices: ``(N, 3)`` float32 positions (metres for our job outputs).
        faces: ``(F, 3)`` int32 vertex indices (counter-clockwise as stored).
        colors: ``(N, 3)`` uint8 sRGB vertex colours, or None when the file has none.
        labels: ``(N,)`` uint8 per-vertex class ids (``label`` property), or None.
        vertex_properties: every vertex property by name, as read (1-D arrays).
    """

    vertices: np.ndarray
    faces: np.ndarray
    colors: np.ndarray | None = None
    labels: np.ndarray | None = None
    vertex_properties: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class _Element:
    name: str
    count: int
    properties: list[tuple[str, str, str | None, str | None]]  # (name, type or "list", count type, item type)


def _parse_header(data: bytes, path: str) -> tuple[str, list[_Element], int]:
    end = data.find(b"end_header", 0, _MAX_HEADER_BYTES)
    if not data.startswith(b"ply") or end < 0:
        raise PlyError(f"{path} is not a PLY file (no 'ply' magic or no 'end_header' in the first 64 KiB)")
    body_start = data.index(b"\n", end) + 1
    lines = data[:end].decode("ascii", errors="replace").splitlines()
    fmt = None
    elements: list[_Element] = []
    for raw in lines[1:]:
        tok = raw.split()
        if not tok or tok[0] in ("comment", "obj_info"):
            continue
        if tok[0] == "format":
            fmt = tok[1] if len(tok) > 1 else ""
        elif tok[0] == "element":
            if len(tok) != 3 or not tok[2].isdigit():
                raise PlyError(f"{path}: bad header line {raw!r}")
            elements.append(_Element(tok[1], int(tok[2]), []))
        elif tok[0] == "property":
            if not elements:
                raise PlyError(f"{path}: property before any element: {raw!r}")
            if len(tok) == 5 and tok[1] == "list":
                if tok[2] not in _SCALAR_TYPES or tok[3] not in _SCALAR_TYPES:
                    raise PlyError(f"{path}: unknown list types in {raw!r}")
                elements[-1].properties.append((tok[4], "list", tok[2], tok[3]))
            elif len(tok) == 3 and tok[1] in _SCALAR_TYPES:
                elements[-1].properties.append((tok[2], tok[1], None, None))
            else:
                raise PlyError(f"{path}: unsupported property line {raw!r}")
    if fmt == "ascii":
        raise PlyError(f"{path} is ASCII PLY; this reader loads binary PLY (re-save it as binary, or use the backend's mesh.ply)")
    if fmt not in ("binary_little_endian", "binary_big_endian"):
        raise PlyError(f"{path}: unknown PLY format {fmt!r}")
    return ("<" if fmt == "binary_little_endian" else ">"), elements, body_start


def _read_faces(buf: memoryview, offset: int, elem: _Element, endian: str, path: str) -> tuple[np.ndarray, int]:
    """Faces element -> ``(F, 3)`` int32 triangles and the offset after the element."""
    if len(elem.properties) != 1 or elem.properties[0][1] != "list":
        raise PlyError(f"{path}: face element must have exactly one list property (vertex_indices)")
    _, _, count_t, item_t = elem.properties[0]
    ct = np.dtype(endian + _SCALAR_TYPES[count_t])
    it = np.dtype(endian + _SCALAR_TYPES[item_t])
    n = elem.count
    if n == 0:
        return np.zeros((0, 3), np.int32), offset
    # Fast path: every face is a triangle -> one structured read.
    tri = np.dtype([("n", ct), ("v", it, (3,))])
    if offset + n * tri.itemsize <= len(buf):
        rows = np.frombuffer(buf, dtype=tri, count=n, offset=offset)
        if (rows["n"] == 3).all():
            return rows["v"].astype(np.int32), offset + n * tri.itemsize
    # Slow path: polygons of any size, triangulated as fans.
    tris: list[np.ndarray] = []
    for _ in range(n):
        if offset + ct.itemsize > len(buf):
            raise PlyError(f"{path}: file ends inside the face list")
        k = int(np.frombuffer(buf, dtype=ct, count=1, offset=offset)[0])
        offset += ct.itemsize
        if offset + k * it.itemsize > len(buf):
            raise PlyError(f"{path}: file ends inside the face list")
        idx = np.frombuffer(buf, dtype=it, count=k, offset=offset).astype(np.int64)
        offset += k * it.itemsize
        if k >= 3:
            tris.append(np.stack([np.full(k - 2, idx[0]), idx[1:-1], idx[2:]], axis=1))
    faces = np.concatenate(tris).astype(np.int32) if tris else np.zeros((0, 3), np.int32)
    return faces, offset


def read_ply(path: str | os.PathLike) -> PlyMesh:
    """Read a binary PLY triangle mesh.

    Args:
        path: file path.

    Returns:
        :class:`PlyMesh` with vertices ``(N, 3)`` float32, faces ``(F, 3)`` int32, colours ``(N, 3)``
        uint8 sRGB or None, labels ``(N,)`` uint8 or None.

    Raises:
        PlyError: not a PLY file, ASCII PLY, a truncated file, missing x/y/z, a vertex list property,
            or face indices outside ``0..N-1``.
        OSError: the file cannot be read.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        data = f.read()
    endian, elements, offset = _parse_header(data, path)
    buf = memoryview(data)
    props: dict[str, np.ndarray] = {}
    faces = np.zeros((0, 3), np.int32)
    have_vertex = False
    for elem in elements:
        if elem.name == "vertex":
            if any(p[1] == "list" for p in elem.properties):
                raise PlyError(f"{path}: list properties on vertices are not supported")
            dt = np.dtype([(name, endian + _SCALAR_TYPES[t]) for name, t, _, _ in elem.properties])
            if offset + elem.count * dt.itemsize > len(buf):
                raise PlyError(f"{path} is truncated: {elem.count} vertices need {elem.count * dt.itemsize} bytes")
            rows = np.frombuffer(buf, dtype=dt, count=elem.count, offset=offset)
            offset += elem.count * dt.itemsize
            props = {name: np.array(rows[name]) for name in dt.names}
            have_vertex = True
        elif elem.name == "face":
            faces, offset = _read_faces(buf, offset, elem, endian, path)
        else:
            if any(p[1] == "list" for p in elem.properties):
                raise PlyError(f"{path}: cannot skip list element {elem.name!r}")
            size = sum(np.dtype(_SCALAR_TYPES[p[1]]).itemsize for p in elem.properties)
            offset += elem.count * size
    if not have_vertex or not all(k in props for k in ("x", "y", "z")):
        raise PlyError(f"{path}: no vertex element with x, y, z properties")
    vertices = np.stack([props["x"], props["y"], props["z"]], axis=1).astype(np.float32)
    if faces.size and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise PlyError(f"{path}: face indices outside 0..{len(vertices) - 1}")
    colors = None
    if all(k in props for k in ("red", "green", "blue")):
        rgb = np.stack([props["red"], props["green"], props["blue"]], axis=1)
        if rgb.dtype.kind == "f":  # float colours in [0, 1]
            rgb = np.clip(np.round(rgb * 255.0), 0, 255)
        colors = rgb.astype(np.uint8)
    labels = props["label"].astype(np.uint8) if "label" in props else None
    return PlyMesh(vertices=vertices, faces=faces, colors=colors, labels=labels, vertex_properties=props)


def write_ply(path: str | os.PathLike, vertices: np.ndarray, faces: np.ndarray,
              colors: np.ndarray | None = None, labels: np.ndarray | None = None) -> None:
    """Write the job-output PLY layout (docs/contracts.md section 6), atomically (temp file + rename).

    Used by the add-on's tests and by anyone who wants to hand-craft a job folder.

    Args:
        vertices: ``(N, 3)`` float positions, metres. faces: ``(F, 3)`` int indices.
        colors: ``(N, 3)`` uint8 sRGB or None. labels: ``(N,)`` uint8 or None.
    """
    vertices = np.asarray(vertices, np.float32).reshape(-1, 3)
    faces = np.asarray(faces, np.int32).reshape(-1, 3)
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {len(vertices)}",
              "property float x", "property float y", "property float z"]
    if colors is not None:
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
        header += ["property uchar red", "property uchar green", "property uchar blue"]
    if labels is not None:
        fields += [("label", "u1")]
        header += ["property uchar label"]
    header += [f"element face {len(faces)}", "property list uchar int vertex_indices", "end_header"]
    rows = np.zeros(len(vertices), dtype=np.dtype(fields))
    rows["x"], rows["y"], rows["z"] = vertices.T
    if colors is not None:
        c = np.asarray(colors, np.uint8).reshape(-1, 3)
        rows["red"], rows["green"], rows["blue"] = c.T
    if labels is not None:
        rows["label"] = np.asarray(labels, np.uint8)
    frows = np.zeros(len(faces), dtype=np.dtype([("n", "u1"), ("v", "<i4", (3,))]))
    frows["n"] = 3
    frows["v"] = faces
    payload = ("\n".join(header) + "\n").encode("ascii") + rows.tobytes() + frows.tobytes()
    path = os.fspath(path)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(payload)
    os.replace(tmp, path)
