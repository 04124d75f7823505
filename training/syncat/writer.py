"""One SynCat sample end to end, the manifest, and resumable multiprocessing generation.

The folder format is SynHead's (docs/contracts.md section 3, training/synhead/writer.py): the same file
names, image modes and dtypes, written by SynHead's own helpers (atomic files, PNG/NPY/PLY/NPZ encoders,
renderer, point sampler, cavity filling); only the scene, the labels (seg2cat, backend/labels.py ``CAT``)
and the sketches are the cat's. The manifest says ``"generator": "syncat"``, ``"subject": "cat"`` and
``"label_set": "seg2cat"``; every sample also carries ``subject`` and ``label_set``.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from backend.coords import BOX_SIZE_M
from backend.labels import CAT
from backend.weights import atomic_write_text
from training.synhead import TEST_SEEDS, split_of_seed
from training.synhead.points import (POINTS_LABELS_VISIBLE, POINTS_OCCUPANCY_FILLED, fill_enclosed_cavities,
                                     npz_bytes, sample_points)
from training.synhead.writer import (INPUT_RESOLUTION, VIEW_ORDER, VIEW_RESOLUTION, _png, _write_file,
                                     canonical_framing, complete_sample_entries, content_box, ply_bytes, sample_id,
                                     view_files)

from . import GENERATOR, GENERATOR_VERSION


def generate_cat_sample(seed: int, out_dir: str | os.PathLike, num_views: int = 4) -> dict:
    """Generate and write cat sample ``seed`` under ``out_dir``; return its manifest entry.

    ``num_views`` orthographic 128^2 views (front, back, left, right, in this order) besides the 512^2
    input view. Deterministic: the same seed gives the same files. Raises ValueError for ``num_views``
    outside 1..4.
    """
    from training.synhead.render import candidates_from_coarse, ortho_camera, render_view
    from training.synhead.sketch_styles import ink_fraction

    from .scene import build_cat_scene
    from .strokes import cat_strokes, choose_style, draw_sketch

    if not 1 <= num_views <= len(VIEW_ORDER):
        raise ValueError(f"--views must be 1..{len(VIEW_ORDER)} (front, back, left, right), got {num_views}")
    t0 = time.perf_counter()
    sid = sample_id(seed)
    d = Path(out_dir) / sid
    (d / "views").mkdir(parents=True, exist_ok=True)
    scene = build_cat_scene(seed)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5CA7]))
    view_renders = {name: render_view(scene, name, VIEW_RESOLUTION) for name in VIEW_ORDER[:num_views]}
    front = render_view(scene, "front", INPUT_RESOLUTION,
                        candidates=candidates_from_coarse(view_renders["front"]["alpha"], INPUT_RESOLUTION))
    doc = cat_strokes(front["label"], scene, rng)
    sketch, style = draw_sketch(choose_style(rng), doc, front["rgb"], front["label"], rng)
    files = {"sketch.png": _png(sketch, "L"), "strokes.json": json.dumps(doc, separators=(",", ":")).encode(),
             "mask.png": _png(front["label"], "L"), "rgb.png": _png(front["rgb"], "RGB")}
    views = view_files(sid, view_renders, files)
    pts = sample_points(scene, rng)
    mesh, vlab, vcol, _ = scene.combined()
    pts = fill_enclosed_cavities(pts, {"vertices": np.asarray(mesh.vertices, np.float32), "faces": mesh.faces})
    files["points.npz"] = npz_bytes(pts)
    files["mesh.ply"] = ply_bytes(mesh.vertices, mesh.faces, vcol, vlab)
    for rel, data in files.items():
        _write_file(d / rel, data)
    entry = {
        "id": sid, "seed": int(seed), "split": split_of_seed(seed), "generator": GENERATOR,
        "generator_version": GENERATOR_VERSION, "subject": "cat", "label_set": CAT.name,
        "sketch": f"{sid}/sketch.png", "sketch_style": style, "strokes": f"{sid}/strokes.json",
        "mask": f"{sid}/mask.png", "rgb": f"{sid}/rgb.png", "views": views, "points": f"{sid}/points.npz",
        "mesh": f"{sid}/mesh.ply", "points_labels": POINTS_LABELS_VISIBLE, "points_occupancy": POINTS_OCCUPANCY_FILLED,
        "camera": {**ortho_camera("front", INPUT_RESOLUTION), "box_size_m": BOX_SIZE_M},
        "appearance": scene.appearance, "params": scene.params, "placement": scene.placement,
        "content_box": content_box(sketch), "ink_fraction": round(ink_fraction(sketch), 5),
        "labels_present": sorted(int(x) for x in np.unique(front["label"])),
        "num_vertices": len(mesh.vertices), "num_faces": len(mesh.faces),
        "seconds": round(time.perf_counter() - t0, 3),
    }
    atomic_write_text(d / "sample.json", json.dumps(entry, indent=1))
    return entry


def write_cat_manifest(out_dir: str | os.PathLike) -> dict:
    """Collect every complete sample (``s*/sample.json``) into ``manifest.json``; return the manifest."""
    out_dir = Path(out_dir)
    entries = complete_sample_entries(out_dir)
    manifest = {"generator": GENERATOR, "version": GENERATOR_VERSION, "subject": "cat", "label_set": CAT.name,
                "label_names": list(CAT.names), "box_size_m": BOX_SIZE_M, "input_resolution": INPUT_RESOLUTION,
                "view_resolution": VIEW_RESOLUTION, "test_seeds": list(TEST_SEEDS),
                "canonical_framing": canonical_framing(entries), "points_labels": POINTS_LABELS_VISIBLE,
                "points_occupancy": POINTS_OCCUPANCY_FILLED, "samples": entries}
    atomic_write_text(out_dir / "manifest.json", json.dumps(manifest, indent=1))
    return manifest


def _check_folder(out_dir: Path) -> None:
    """Refuse to add cats to a folder of another generator or version (they must not be mixed)."""
    for p in sorted(out_dir.glob("s*/sample.json"))[:1]:
        try:
            e = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):
            return
        gen, version = e.get("generator", "synhead"), e.get("generator_version")
        if (gen, version) != (GENERATOR, GENERATOR_VERSION):
            raise ValueError(f"{out_dir} holds samples of {gen} {version}, this is {GENERATOR} {GENERATOR_VERSION}; "
                             "write to a new --out folder (generators and versions must not be mixed)")


def _worker_init() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def _worker_run(args) -> dict:
    seed, out_dir, views = args
    return generate_cat_sample(seed, out_dir, views)


def synthesise_cats(out_dir: str | os.PathLike, num: int, seed: int = 0, views: int = 4, workers: int = 1,
                    progress: bool = True) -> dict:
    """Generate cat seeds ``seed .. seed+num-1`` into ``out_dir`` (complete samples are skipped), then write
    the manifest; return it. Workers are processes (``multiprocessing``, fork).

    Raises:
        ValueError: ``num < 0``, ``workers < 1``, or a folder holding another generator's samples.
    """
    import multiprocessing as mp

    from tqdm import tqdm

    if num < 0 or workers < 1:
        raise ValueError("--num must be >= 0 and --workers >= 1")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _check_folder(out_dir)
    todo = [s for s in range(seed, seed + num) if not (out_dir / sample_id(s) / "sample.json").exists()]
    bar = tqdm(total=num, initial=num - len(todo), disable=not progress, desc="syncat", unit="cat")
    if workers == 1:
        _worker_init()
        results = (generate_cat_sample(s, out_dir, views) for s in todo)
        pool = None
    else:
        pool = mp.get_context("fork").Pool(workers, initializer=_worker_init)
        results = pool.imap_unordered(_worker_run, [(s, str(out_dir), views) for s in todo], chunksize=1)
    try:
        for done, _ in enumerate(results, 1):
            bar.update(1)
            if done % 100 == 0:
                write_cat_manifest(out_dir)
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    bar.close()
    return write_cat_manifest(out_dir)
