"""Grey-shaded front and back views of generated heads: geometry without the vertex colours (issue 36).

A generator trained by regression can emboss a ghost of the face relief on the back of long hair; the
vertex colours hide it, grey shading shows it. For each weights folder this script runs the backend's
``generate`` (in-process, the library call ``s3d generate`` makes, default options but the seed) on one
input into a temporary folder, reads ``mesh.ply`` and ray casts (Embree, ``training/synhead/raycast.py``)
orthographic FRONT and BACK views in grey Lambert shading (vertex normals interpolated across each hit
triangle, two-sided; light from the viewer plus a little from above; no vertex colours). It writes one
sheet: a row per weights folder (front, back), labelled with the folder's LABEL.

Usage::

    python benchmarks/shaded_views.py [--input examples/head_long_hair.png] --weights T=weights \
        --weights CC2=/work/runs/s25/w_CC2t2 [--seed 0] [--out /tmp/ghost.png] [--size 384] [--threads 1]

Coordinate frame (backend/coords.py): metres, Blender's head frame: Z up, the face looks along -Y, +X on
the right of the front image. FRONT looks from -Y along +Y (image right = +X, up = +Z), as the input view;
BACK looks from +Y along -Y (image right = -X, up = +Z), as a person behind the head sees it. Both views
span the tri-plane box (``BOX_SIZE_M`` = 0.40 m a side, centred at ``BOX_CENTER_M``), so every tile has the
same scale: 0.40 m / ``--size`` pixels.

Printed per row: seconds (generate, with model loading; render) and ``back_relief_mm``: over the back
view's hair pixels (hit triangles whose first vertex is labelled ``hair``, whose shading normal is within
about 45 degrees of the view direction (cosine >= ``MIN_FACING``), 3 px in from the region's edge), the RMS
residual, in mm, of the hair's height towards the viewer after a least-squares polynomial fit of degree
``POLY_DEGREE`` in (x, z): relief finer than the head's overall shape. It is general roughness, NOT a
ghost measure: it is only comparable between runs on the same input (same hair), e.g. before and after a
fix. Reference values (384 px): a test sphere 0.03 mm, with a 30 mm bump on its back about 1 mm; SynHead
ground-truth heads (``training.synhead.scene.build_scene``) with short smooth hair 0.36-0.37 mm (seeds
1-3), with curly hair 7.8-8.9 mm (seeds 6, 7); examples/head_long_hair.png with the bundled weights and
seed 0, whose back shows the ghost face, 1.78 mm. The picture is the check. (A correlation between the
front's face relief and the back's hair relief at the same (x, z) was tried and dropped: shifting the
back by 10-40 px changed it as much as the ghost did.)
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

#: Background colour of the tiles (sRGB); the mesh is grey (R = G = B) from ``SHADE_RANGE``.
BACKGROUND = (214, 226, 240)
#: Grey level of a pixel facing away from the light, and of one facing it (0..255).
SHADE_RANGE = (28.0, 236.0)
#: Light direction besides the viewer's: this much of "up" (+Z) is added to the view direction.
LIGHT_UP = 0.35
#: back_relief_mm fits the back of the hair with a polynomial of this degree in (x, z).
POLY_DEGREE = 4
#: back_relief_mm leaves out pixels whose surface turns further than this (cosine) from the viewer.
MIN_FACING = 0.7


def view_rays(view: str, size: int, half_m: float, centre=(0.0, 0.0, 0.0)):
    """Orthographic rays of one view: ``(origins (size*size, 3), direction (3,))``, metres, row-major
    from the image's top-left. ``view``: ``front`` (from -Y along +Y, image right = +X) or ``back`` (from
    +Y along -Y, image right = -X); up is +Z in both; the image spans ``centre +- half_m`` in x and z."""
    if view not in ("front", "back"):
        raise ValueError(f"view must be front or back, not {view!r}")
    s = (np.arange(size) + 0.5) / size * 2.0 - 1.0  # -1 .. 1, left to right / top to bottom
    col, row = np.meshgrid(s, s)
    sign = 1.0 if view == "front" else -1.0
    x = centre[0] + sign * col * half_m
    z = centre[2] - row * half_m
    y = np.full_like(x, centre[1] - sign * 4.0 * half_m)
    origins = np.stack([x, y, z], -1).reshape(-1, 3)
    return origins, np.array([0.0, sign, 0.0])


def _vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted vertex normals ``(V, 3)``, unit (zero where a vertex has no face)."""
    tri = vertices[faces]
    fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    vn = np.zeros_like(vertices)
    for k in range(3):
        np.add.at(vn, faces[:, k], fn)
    return vn / np.maximum(np.linalg.norm(vn, axis=1, keepdims=True), 1e-20)


def render_view(vertices: np.ndarray, faces: np.ndarray, view: str, size: int = 384,
                half_m: float | None = None, labels: np.ndarray | None = None) -> dict:
    """Ray cast one grey-shaded orthographic view of a mesh.

    Args:
        vertices: ``(V, 3)`` metres, head frame; faces: ``(F, 3)`` int; view: ``front`` | ``back``
            (:func:`view_rays`); size: pixels a side; half_m: half the side of the square viewed, metres
            (default half the tri-plane box); labels: ``(V,)`` label ids, optional.
    Returns:
        ``{"image": (size, size, 3) uint8 (grey mesh on BACKGROUND), "hit": (size, size) bool,
        "height_m": (size, size) float, height of the hit towards the viewer (-y from the front, +y from
        the back; NaN where nothing is hit), "label": (size, size) int (the hit triangle's first vertex's
        label; -1 where nothing is hit or no labels), "facing": (size, size) float, cosine between the
        shading normal and the direction to the viewer (0 where nothing is hit)}``.
    """
    from backend.coords import BOX_CENTER_M, BOX_SIZE_M
    from training.synhead.raycast import RayScene

    vertices, faces = np.asarray(vertices, np.float64), np.asarray(faces, np.int64).reshape(-1, 3)
    half = BOX_SIZE_M / 2.0 if half_m is None else half_m
    origins, direction = view_rays(view, size, half, BOX_CENTER_M)
    hit, tri, t, bary = RayScene(vertices, faces).first_hits(origins, np.broadcast_to(direction, origins.shape))
    tri_hit = faces[tri[hit]]
    normals = np.einsum("nk,nkd->nd", bary[hit], _vertex_normals(vertices, faces)[tri_hit])
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-20)
    to_viewer = -direction
    normals *= np.where(normals @ to_viewer < 0, -1.0, 1.0)[:, None]  # two-sided
    facing = np.zeros(size * size)
    facing[hit] = normals @ to_viewer
    light = to_viewer + LIGHT_UP * np.array([0.0, 0.0, 1.0])
    lambert = np.clip(normals @ (light / np.linalg.norm(light)), 0.0, 1.0)
    grey = SHADE_RANGE[0] + (SHADE_RANGE[1] - SHADE_RANGE[0]) * lambert
    image = np.tile(np.asarray(BACKGROUND, np.float64), (size * size, 1))
    image[hit] = grey[:, None]
    points = origins[hit] + t[hit, None] * direction
    height = np.full(size * size, np.nan)
    height[hit] = points @ to_viewer
    label = np.full(size * size, -1, np.int64)
    if labels is not None:
        label[hit] = np.asarray(labels)[tri_hit[:, 0]]
    return {"image": np.round(image).astype(np.uint8).reshape(size, size, 3), "hit": hit.reshape(size, size),
            "height_m": height.reshape(size, size), "label": label.reshape(size, size),
            "facing": facing.reshape(size, size)}


def back_relief_mm(back: dict, degree: int = POLY_DEGREE) -> float:
    """``back_relief_mm`` (module docstring) of a :func:`render_view` back view made with labels; NaN
    when it has too few hair pixels for the fit."""
    from scipy.ndimage import binary_erosion

    from backend.labels import LABEL_IDS

    size = back["hit"].shape[0]
    hair = binary_erosion((back["label"] == LABEL_IDS["hair"]) & (back["facing"] >= MIN_FACING), iterations=3)
    s = (np.arange(size) + 0.5) / size * 2.0 - 1.0
    cols, rows = np.meshgrid(s, s)
    x, z, h = cols[hair], rows[hair], back["height_m"][hair]
    terms = np.stack([x ** i * z ** j for i in range(degree + 1) for j in range(degree + 1 - i)], 1)
    if len(h) < 4 * terms.shape[1]:
        return float("nan")
    coef, *_ = np.linalg.lstsq(terms, h, rcond=None)
    return float(np.sqrt(np.mean((h - terms @ coef) ** 2)) * 1000.0)


def run_one(source: str, weights: str, seed: int, size: int) -> dict:
    """Generate one head with the networks in ``weights`` and render it: ``{"front", "back" (render_view
    results), "back_relief_mm", "generate_s", "render_s"}``."""
    from backend.export import read_ply
    from backend.pipeline import GenerateOptions, generate, load_models

    t0 = time.perf_counter()
    models = load_models(weights, "cpu")
    with tempfile.TemporaryDirectory(prefix="s3d_shaded_") as tmp:
        out = Path(tmp) / "job"
        generate(source, out, GenerateOptions(seed=seed), models=models)
        ply = read_ply((out / "mesh.ply").read_bytes())
    t1 = time.perf_counter()
    views = {v: render_view(ply["vertices"], ply["faces"], v, size, labels=ply["label"]) for v in ("front", "back")}
    relief = back_relief_mm(views["back"])
    return {**views, "back_relief_mm": relief, "generate_s": t1 - t0, "render_s": time.perf_counter() - t1}


def compose_sheet(rows: list[tuple[str, dict]], size: int):
    """One row per ``(label, run_one result)``: a label strip, then the front and back tiles."""
    from PIL import Image, ImageDraw

    label_w, pad, head_h = 140, 4, 22
    sheet = Image.new("RGB", (label_w + 2 * (size + pad), head_h + len(rows) * (size + pad)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for k, title in enumerate(("front", "back")):
        draw.text((label_w + k * (size + pad) + 6, 5), title, fill=(0, 0, 0))
    for r, (label, res) in enumerate(rows):
        top = head_h + r * (size + pad)
        draw.text((8, top + size // 2 - 20), label, fill=(0, 0, 0))
        draw.text((8, top + size // 2), f"back relief {res['back_relief_mm']:.2f} mm", fill=(60, 60, 60))
        for k, view in enumerate(("front", "back")):
            sheet.paste(Image.fromarray(res[view]["image"]), (label_w + k * (size + pad), top))
    return sheet


def _weights_arg(text: str) -> tuple[str, str]:
    label, sep, path = text.partition("=")
    if not sep or not label or not path:
        raise argparse.ArgumentTypeError(f"expected LABEL=DIR, not {text!r}")
    return label, path


def main(argv: list[str] | None = None) -> int:
    import io

    from backend.weights import atomic_write_bytes

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--input", default=str(ROOT / "examples" / "head_long_hair.png"))
    p.add_argument("--weights", type=_weights_arg, action="append", required=True, metavar="LABEL=DIR")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="shaded_views.png")
    p.add_argument("--size", type=int, default=384)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    rows = []
    for label, wdir in args.weights:
        res = run_one(args.input, wdir, args.seed, args.size)
        print(f"{label}: generate {res['generate_s']:.1f} s, render {res['render_s']:.1f} s; "
              f"back_relief_mm {res['back_relief_mm']:.2f}", flush=True)
        rows.append((label, res))
    buf = io.BytesIO()
    compose_sheet(rows, args.size).save(buf, format="PNG")
    atomic_write_bytes(args.out, buf.getvalue())
    print(f"sheet: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
