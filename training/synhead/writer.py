"""One SynHead sample end to end, the manifest, and resumable multiprocessing generation.

Layout (docs/contracts.md section 3): ``DIR/manifest.json`` and one folder ``DIR/s<seed:06d>/`` per
sample with ``sketch.png``, ``strokes.json``, ``mask.png``, ``rgb.png``, ``views/<view>_{rgb,label,
normal,alpha}.png`` + ``views/<view>_depth.npy``, ``points.npz``, ``mesh.ply`` and ``sample.json`` (the
sample's manifest entry). ``sample.json`` is written last, so a sample folder without it is incomplete
and is regenerated on resume. Every file is written atomically (temporary file + rename).
"""
from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path

import numpy as np
from PIL import Image

from backend.coords import BOX_SIZE_M, box_xz_to_pixel
from backend.weights import atomic_write_text

from . import GENERATOR_VERSION, TEST_SEEDS, split_of_seed
from .points import (POINTS_LABELS_VISIBLE, POINTS_OCCUPANCY_FILLED, fill_enclosed_cavities, npz_bytes,
                     sample_points)

INPUT_RESOLUTION = 512
VIEW_RESOLUTION = 128
VIEW_ORDER = ("front", "back", "left", "right")
PENCIL_INK_RANGE = (0.01, 0.25)
#: Ink fraction range of the drawing styles of real drawings (generator 0.5.0; dense hatched hair and dark
#: portraits reach 0.28); a sketch outside it (or a pencil one outside PENCIL_INK_RANGE) is drawn rough instead.
DRAWING_INK_RANGE = (0.01, 0.32)


def _write_file(path: Path, data: bytes) -> None:
    """Atomic (temporary name in the same folder + rename) but without fsync: a crash can lose a
    sample's files, never leave a half-written one under its final name, and ``sample.json`` (written
    last) marks a sample complete."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def sample_id(seed: int) -> str:
    """A head's folder name from its seed: ``s`` + six digits (``s014100``)."""
    return f"s{seed:06d}"


def _png(arr: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format="PNG", compress_level=3)
    return buf.getvalue()


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def ply_bytes(vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray, labels: np.ndarray) -> bytes:
    """Binary little-endian PLY: vertex x y z float32 (metres), red green blue uchar (sRGB), label
    uchar; face ``vertex_indices`` list uchar int32 (docs/contracts.md section 6)."""
    v = np.zeros(len(vertices), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"),
                                       ("blue", "u1"), ("label", "u1")])
    v["x"], v["y"], v["z"] = vertices[:, 0], vertices[:, 1], vertices[:, 2]
    c = (np.clip(colors, 0, 1) * 255 + 0.5).astype(np.uint8)
    v["red"], v["green"], v["blue"] = c[:, 0], c[:, 1], c[:, 2]
    v["label"] = labels
    f = np.zeros(len(faces), dtype=[("n", "u1"), ("i", "<i4", (3,))])
    f["n"] = 3
    f["i"] = faces
    header = (
        "ply\nformat binary_little_endian 1.0\ncomment SynHead ground truth, metres, canonical head frame\n"
        f"element vertex {len(v)}\nproperty float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\nproperty uchar label\n"
        f"element face {len(f)}\nproperty list uchar int vertex_indices\nend_header\n")
    return header.encode("ascii") + v.tobytes() + f.tobytes()


def content_box(sketch: np.ndarray, threshold: int = 128) -> list[float] | None:
    """Ink bounding box ``[x0, y0, x1, y1]`` in normalised image coordinates (y down), or None."""
    ys, xs = np.nonzero(sketch < threshold)
    if len(xs) == 0:
        return None
    h, w = sketch.shape
    return [round(xs.min() / w, 5), round(ys.min() / h, 5), round((xs.max() + 1) / w, 5), round((ys.max() + 1) / h, 5)]


def view_files(sid: str, view_renders: dict, files: dict) -> list[dict]:
    """Encode rendered views (name -> :func:`training.synhead.render.render_view` dict) into ``files``
    (relative path -> bytes: ``views/<name>_{rgb,label,normal,alpha}.png``, ``views/<name>_depth.npy``
    float16) and return their manifest entries (paths prefixed with the sample id ``sid``, camera)."""
    views = []
    for name, r in view_renders.items():
        nrm = ((r["normal"] + 1) / 2 * 255 + 0.5).astype(np.uint8)
        nrm[r["alpha"] == 0] = 0
        files[f"views/{name}_rgb.png"] = _png(r["rgb"], "RGB")
        files[f"views/{name}_label.png"] = _png(r["label"], "L")
        files[f"views/{name}_normal.png"] = _png(nrm, "RGB")
        files[f"views/{name}_alpha.png"] = _png(r["alpha"], "L")
        files[f"views/{name}_depth.npy"] = _npy(r["depth"].astype(np.float16))
        views.append({"name": name, "rgb": f"{sid}/views/{name}_rgb.png", "label": f"{sid}/views/{name}_label.png",
                      "depth": f"{sid}/views/{name}_depth.npy", "normal": f"{sid}/views/{name}_normal.png",
                      "alpha": f"{sid}/views/{name}_alpha.png", "camera": r["camera"]})
    return views


def generate_sample(seed: int, out_dir: str | os.PathLike, num_views: int = 4, num_persp: int = 0,
                    fill_cavities: bool = True) -> dict:
    """Generate and write sample ``seed`` under ``out_dir``; return its manifest entry.

    ``num_views`` orthographic views (front, back, left, right, in this order) and ``num_persp`` random
    perspective views ``persp0..`` at the same resolution, cameras from their own random stream.
    With ``fill_cavities`` (generator 0.4.0 on) the occupancy of ``points.npz`` counts hidden cavities as
    inside (:func:`training.synhead.points.fill_enclosed_cavities`); it draws no random numbers, so
    ``False`` gives generator 0.3.0's points, which ``s3d-data fill-cavities`` upgrades to the same file.
    Deterministic: the same seed gives the same files. Raises ValueError for ``num_views`` outside 1..4
    or a negative ``num_persp``.
    """
    from .render import candidates_from_coarse, perspective_camera, render_camera, render_view
    from .scene import IRIS_HALF_ANGLE, build_scene
    from .drawing_styles import choose_style, draw_style, has_long_hair
    from .sketch_styles import ink_fraction
    from .strokes import strokes_from_labels

    if not 1 <= num_views <= len(VIEW_ORDER):
        raise ValueError(f"--views must be 1..{len(VIEW_ORDER)} (front, back, left, right), got {num_views}")
    if num_persp < 0:
        raise ValueError(f"--persp must be >= 0, got {num_persp}")
    t0 = time.perf_counter()
    sid = sample_id(seed)
    d = Path(out_dir) / sid
    (d / "views").mkdir(parents=True, exist_ok=True)
    scene = build_scene(seed)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5CE7]))
    # the 128^2 views first: the front one tells the 512^2 input view where rays can hit (same output,
    # about half the rays)
    view_renders = {name: render_view(scene, name, VIEW_RESOLUTION) for name in VIEW_ORDER[:num_views]}
    front = render_view(scene, "front", INPUT_RESOLUTION,
                        candidates=candidates_from_coarse(view_renders["front"]["alpha"], INPUT_RESOLUTION))
    # iris circles in input-view pixels
    iris = []
    for k in range(2):
        c = scene.eyes["centres"][k] + scene.eyes["axes"][k] * scene.eyes["radius"]
        col, row = box_xz_to_pixel(c[0] / (BOX_SIZE_M / 2), c[2] / (BOX_SIZE_M / 2), INPUT_RESOLUTION)
        rad = scene.eyes["radius"] * np.sin(IRIS_HALF_ANGLE) / BOX_SIZE_M * INPUT_RESOLUTION
        iris.append((float(col), float(row), float(rad)))
    doc = strokes_from_labels(front["label"], rng, iris=iris)
    style = choose_style(rng)
    if style == "strands" and not has_long_hair(front["label"]):
        style = "hatched"  # what strands_sketch draws for short hair, recorded under its own name
    if style not in ("clean", "rough"):
        sketch = draw_style(style, doc, front["rgb"], front["label"], rng)
        lo, hi = PENCIL_INK_RANGE if style == "pencil" else DRAWING_INK_RANGE
        if not lo <= ink_fraction(sketch) <= hi:
            style = "rough"
    if style in ("clean", "rough"):
        sketch = draw_style(style, doc, front["rgb"], front["label"], rng)
    files = {
        "sketch.png": _png(sketch, "L"), "strokes.json": json.dumps(doc, separators=(",", ":")).encode(),
        "mask.png": _png(front["label"], "L"), "rgb.png": _png(front["rgb"], "RGB"),
    }
    views = []
    cam_rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0xCA3]))
    for k in range(num_persp):
        cam = perspective_camera(cam_rng, VIEW_RESOLUTION, f"persp{k}")
        view_renders[cam["view"]] = render_camera(scene, cam)
    views += view_files(sid, view_renders, files)
    pts = sample_points(scene, rng)
    mesh, vlab, vcol, _ = scene.combined()
    if fill_cavities:  # against the float32 vertices mesh.ply stores, as `s3d-data fill-cavities` reads them
        pts = fill_enclosed_cavities(pts, {"vertices": np.asarray(mesh.vertices, np.float32), "faces": mesh.faces})
    files["points.npz"] = npz_bytes(pts)
    files["mesh.ply"] = ply_bytes(mesh.vertices, mesh.faces, vcol, vlab)
    for rel, data in files.items():
        _write_file(d / rel, data)
    from .render import ortho_camera

    entry = {
        "id": sid, "seed": int(seed), "split": split_of_seed(seed), "generator_version": GENERATOR_VERSION,
        "sketch": f"{sid}/sketch.png", "sketch_style": style, "strokes": f"{sid}/strokes.json",
        "mask": f"{sid}/mask.png", "rgb": f"{sid}/rgb.png", "views": views, "points": f"{sid}/points.npz",
        "mesh": f"{sid}/mesh.ply", "points_labels": POINTS_LABELS_VISIBLE,
        **({"points_occupancy": POINTS_OCCUPANCY_FILLED} if fill_cavities else {}),
        "camera": {**ortho_camera("front", INPUT_RESOLUTION), "box_size_m": BOX_SIZE_M},
        "appearance": scene.appearance, "params": scene.params, "placement": scene.placement,
        "content_box": content_box(sketch), "ink_fraction": round(ink_fraction(sketch), 5),
        "labels_present": sorted(int(x) for x in np.unique(front["label"])),
        "num_vertices": int(len(mesh.vertices)), "num_faces": int(len(mesh.faces)),
        "seconds": round(time.perf_counter() - t0, 3),
    }
    atomic_write_text(d / "sample.json", json.dumps(entry, indent=1))
    return entry


def _worker_init() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    from .heads import head_template

    head_template()


def _worker_run(args) -> dict:
    seed, out_dir, views, persp = args
    return generate_sample(seed, out_dir, views, persp)


def canonical_framing(entries: list[dict]) -> dict | None:
    """Median content box of the sketches: ``{"center": [cx, cy], "height": h, "width": w, "n": N}``
    in normalised image coordinates (y down); None without any inked sketch."""
    boxes = np.array([e["content_box"] for e in entries if e.get("content_box")])
    if len(boxes) == 0:
        return None
    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    cy = (boxes[:, 1] + boxes[:, 3]) / 2
    return {"center": [round(float(np.median(cx)), 4), round(float(np.median(cy)), 4)],
            "height": round(float(np.median(boxes[:, 3] - boxes[:, 1])), 4),
            "width": round(float(np.median(boxes[:, 2] - boxes[:, 0])), 4), "n": int(len(boxes))}


def canonical_landmarks(root: str | os.PathLike, entries: list[dict], labels=None) -> dict | None:
    """Median landmarks and head box of the input-view masks (``e["mask"]``, ids of ``labels``, default
    CelebAMask-HQ) of ``entries``, found by the backend's own functions (backend/align_landmarks.py
    ``mask_landmarks`` and ``mask_head_box`` with the set's ``LANDMARK_CLASSES``): the eye centre is the
    centroid of the eye classes, the mouth centre that of the mouth classes, the head box the top of the
    head classes, the bottom of the face classes and their mean column.

    Normalised coordinates (y down): a pixel coordinate ``p`` (pixel centres at integers, edges at
    half-integers) of an ``H``-pixel mask is ``(p + 0.5) / H``, the inverse of the backend's placement
    (``canonical * size - 0.5``).

    Returns:
        ``{"eye_center": [x, y], "eye_mouth_distance": d, "eye_mouth_distance_10_90": [d10, d90],
        "landmarks_n": n, "head_box": {"top", "chin", "center_x"}, "head_box_n": m}`` (4 decimals; medians
        per coordinate), or None when no mask has both eyes and mouth.

    Raises:
        training.datasets.DataError: an unreadable mask or ids outside ``labels``.
    """
    from backend.align_landmarks import mask_head_box, mask_landmarks
    from backend.labels import CELEBAMASK_HQ
    from training.datasets import read_ids

    labels = labels or CELEBAMASK_HQ
    eyes, dists, boxes = [], [], []
    for e in entries:
        m = read_ids(Path(root) / e["mask"], labels)
        h = m.shape[0]
        lm, box = mask_landmarks(m, labels), mask_head_box(m, labels)
        if lm is not None:
            a, b = ((np.asarray(lm[k]) + 0.5) / h for k in ("eye", "mouth"))
            eyes.append(a)
            dists.append(float(np.linalg.norm(b - a)))
        if box is not None:
            boxes.append([(box[k] + 0.5) / h for k in ("top", "chin", "center_x")])
    if not eyes:
        return None
    c, d = np.median(np.array(eyes), 0), np.array(dists)
    out = {"eye_center": [round(float(c[0]), 4), round(float(c[1]), 4)],
           "eye_mouth_distance": round(float(np.median(d)), 4),
           "eye_mouth_distance_10_90": [round(float(v), 4) for v in np.percentile(d, [10, 90])],
           "landmarks_n": len(eyes)}
    if boxes:
        hb = np.median(np.array(boxes), 0)
        out["head_box"] = {k: round(float(v), 4) for k, v in zip(("top", "chin", "center_x"), hb)}
        out["head_box_n"] = len(boxes)
    return out


def complete_sample_entries(out_dir: str | os.PathLike) -> list[dict]:
    """The ``sample.json`` records of every complete sample (``s*/sample.json``) of a data folder, by seed.

    A sample whose record is missing or unreadable (a generation cut short) is left out, not an error."""
    entries = []
    for p in sorted(Path(out_dir).glob("s*/sample.json")):
        try:
            entries.append(json.loads(p.read_text()))
        except (OSError, json.JSONDecodeError):
            continue
    return sorted(entries, key=lambda e: e["seed"])


def write_manifest(out_dir: str | os.PathLike) -> dict:
    """Collect every complete sample (``s*/sample.json``) into ``manifest.json``; return the manifest."""
    out_dir = Path(out_dir)
    entries = complete_sample_entries(out_dir)
    manifest = {"generator": "synhead", "version": GENERATOR_VERSION, "box_size_m": BOX_SIZE_M,
                "label_set": "celebamask-hq-19", "input_resolution": INPUT_RESOLUTION,
                "view_resolution": VIEW_RESOLUTION, "test_seeds": list(TEST_SEEDS),
                "canonical_framing": canonical_framing(entries), "samples": entries}
    if all(e.get("points_labels") == POINTS_LABELS_VISIBLE for e in entries):
        manifest["points_labels"] = POINTS_LABELS_VISIBLE
    if entries and all(e.get("points_occupancy") == POINTS_OCCUPANCY_FILLED for e in entries):
        manifest["points_occupancy"] = POINTS_OCCUPANCY_FILLED  # kept while no unfilled sample is added
    atomic_write_text(out_dir / "manifest.json", json.dumps(manifest, indent=1))
    return manifest


def _check_version(out_dir: Path) -> None:
    """Refuse to mix generator versions in one folder (resuming with newer code would mix them)."""
    for p in sorted(out_dir.glob("s*/sample.json"))[:1]:
        try:
            version = json.loads(p.read_text()).get("generator_version")
        except (OSError, json.JSONDecodeError):
            return
        if version != GENERATOR_VERSION:
            raise ValueError(f"{out_dir} holds SynHead samples of generator {version}, this is {GENERATOR_VERSION}; "
                             "write to a new --out folder (versions must not be mixed)")


def synthesise(out_dir: str | os.PathLike, num: int, seed: int = 0, views: int = 4, workers: int = 1,
               progress: bool = True, persp: int = 0) -> dict:
    """Generate seeds ``seed .. seed+num-1`` into ``out_dir`` (skipping complete samples), then write
    the manifest. Returns the manifest. Workers are processes (``multiprocessing``, fork)."""
    import multiprocessing as mp

    from tqdm import tqdm

    if num < 0 or workers < 1:
        raise ValueError("--num must be >= 0 and --workers >= 1")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _check_version(out_dir)
    todo = [s for s in range(seed, seed + num) if not (out_dir / sample_id(s) / "sample.json").exists()]
    bar = tqdm(total=num, initial=num - len(todo), disable=not progress, desc="synhead", unit="head")
    done = 0
    if workers == 1:
        _worker_init()
        for s in todo:
            generate_sample(s, out_dir, views, persp)
            bar.update(1)
            done += 1
            if done % 100 == 0:
                write_manifest(out_dir)
    else:
        ctx = mp.get_context("fork")
        with ctx.Pool(workers, initializer=_worker_init) as pool:
            for _ in pool.imap_unordered(_worker_run, [(s, str(out_dir), views, persp) for s in todo], chunksize=1):
                bar.update(1)
                done += 1
                if done % 100 == 0:
                    write_manifest(out_dir)
    bar.close()
    return write_manifest(out_dir)


def _load_points_and_mesh(root: str, rel: str):
    """``(sample.json dict, points.npz dict, mesh.ply dict)`` of one sample."""
    from backend.export import read_ply

    entry = json.loads((Path(root) / rel / "sample.json").read_text())
    with np.load(Path(root) / entry["points"]) as z:
        points = {k: z[k] for k in z.files}
    return entry, points, read_ply((Path(root) / entry["mesh"]).read_bytes())


def _relabel_one(args: tuple[str, str]) -> str:
    from .points import relabel_points

    root, rel = args
    entry, points, mesh = _load_points_and_mesh(root, rel)
    rng = np.random.default_rng(np.random.SeedSequence([int(entry["seed"]), 0x1ABE1]))
    _write_file(Path(root) / entry["points"], npz_bytes(relabel_points(points, mesh, rng)))
    return _mark_sample(root, rel, entry, "points_labels", POINTS_LABELS_VISIBLE)


def _fill_one(args: tuple[str, str]) -> str:
    root, rel = args
    entry, points, mesh = _load_points_and_mesh(root, rel)
    _write_file(Path(root) / entry["points"], npz_bytes(fill_enclosed_cavities(points, mesh)))
    return _mark_sample(root, rel, entry, "points_occupancy", POINTS_OCCUPANCY_FILLED)


def _mark_sample(root: str, rel: str, entry: dict, key: str, value: str) -> str:
    """Write ``entry`` (the sample's ``sample.json`` dict) back with ``key: value`` added, last: the mark
    says the sample's points are done."""
    atomic_write_text(Path(root) / rel / "sample.json", json.dumps({**entry, key: value}, indent=1))
    return rel


def _upgrade_points(root: str | Path, key: str, value: str, upgrade_one, workers: int, progress: bool) -> int:
    """Run ``upgrade_one((root, sample id))`` on every sample whose ``sample.json`` lacks ``key: value``,
    then mark the manifest; returns the number of samples upgraded."""
    import multiprocessing as mp

    from tqdm import tqdm

    root = Path(root)
    man_path = root / "manifest.json"
    manifest = json.loads(man_path.read_text())
    # each sample.json is marked as its points are rewritten: it alone says what is left to do
    jobs = [(str(root), e["id"]) for e in manifest["samples"]
            if json.loads((root / e["id"] / "sample.json").read_text()).get(key) != value]
    if workers > 1:
        with mp.get_context("spawn").Pool(workers) as pool:
            for _ in tqdm(pool.imap_unordered(upgrade_one, jobs), total=len(jobs), disable=not progress, desc=key):
                pass
    else:
        for job in tqdm(jobs, disable=not progress, desc=key):
            upgrade_one(job)
    for e in manifest["samples"]:
        e[key] = value
    manifest[key] = value
    atomic_write_text(man_path, json.dumps(manifest, indent=1))
    return len(jobs)


def relabel_folder(root: str | Path, workers: int = 1, progress: bool = True) -> int:
    """Rewrite ``label`` and ``rgb`` of every sample's ``points.npz`` in a SynHead folder from the visible
    surface of its ``mesh.ply`` (:func:`training.synhead.points.relabel_points`, what generator 0.3.0
    writes), keeping ``xyz``/``occ``/``kind``; marks each ``sample.json`` and the manifest with
    ``"points_labels": "visible"``. Resumable (marked samples are skipped), each file replaced atomically.
    Returns the number of samples relabelled.

    Raises:
        FileNotFoundError: no ``manifest.json`` in ``root``.
    """
    return _upgrade_points(root, "points_labels", POINTS_LABELS_VISIBLE, _relabel_one, workers, progress)


def fill_cavities_folder(root: str | Path, workers: int = 1, progress: bool = True) -> int:
    """Set ``occ`` to 1 in every sample's ``points.npz`` wherever the free space is enclosed by its
    ``mesh.ply`` (:func:`training.synhead.points.fill_enclosed_cavities`: the mouth cavity behind the lips
    and other hidden voids); marks each ``sample.json`` and the manifest with ``"points_occupancy":
    "cavities-filled"``. Resumable, each file replaced atomically (a hard-linked copy of a folder,
    ``cp -al``, is upgraded without touching the original). Returns the number of samples changed.

    Raises:
        FileNotFoundError: no ``manifest.json`` in ``root``.
    """
    return _upgrade_points(root, "points_occupancy", POINTS_OCCUPANCY_FILLED, _fill_one, workers, progress)
