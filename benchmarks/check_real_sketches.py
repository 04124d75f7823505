"""Run ``generate`` on a folder of real sketches, check the issue's acceptance criteria, draw a sheet.

Criteria (issue 6, "Done when"): per sketch, the largest connected component of the marching-cubes
surface holds at least 95 % of the faces; the bounding box is head-sized (0.15-0.35 m wide); the classes
skin, hair, eyes (l_eye or r_eye), nose and lips (u_lip or l_lip) are present on the mesh. The meshes
include the neck and the top of the bust (as the SynHead training heads do), so the width is measured
on the head's vertices (every class but neck, neck_l and cloth); the whole mesh's width is printed too.

``--pieces`` also reports the surface pieces the clean-up drops (``backend.mesh.largest_component``) and
whether each lies *inside* the kept surface (an enclosed cavity, e.g. behind closed lips: invisible, but it
counts against the 95 %) or outside it (a floater); the criterion itself is unchanged.

``--subject cat`` (issue 40) runs the jobs with the cat networks (``<kind>_cat_lite`` in the weights folder;
when one is missing the script names the file and exits with status 2) and checks, per input, on the
job's mesh.ply (seg2cat labels, metres): the largest component holds at least 95 % of the faces; the
mesh is 0.15-0.38 m wide (x extent of every vertex: a cat has no neck class); the vertices labelled
``ear`` form exactly two pieces, and so do those labelled ``eyes``; at least 20 vertices are labelled
``mouth`` (the muzzle). A piece is a connected component of the faces whose three vertices all carry the
class; pieces holding under 5 % of the class's vertices (crumbs, lone vertices) are not counted. The
width range: SynCat heads (``training.syncat.scene.build_cat_scene``, seeds 2000-2199, placed in the box
as the training data are) span 0.193-0.315 m in x (median 0.244 m; round-faced cats the widest, long-faced
the narrowest); the range adds about 20 % on both sides. The same 200 meshes have 157-262 mouth vertices
(the 20-vertex floor is an eighth of the smallest) and two eye pieces each; 26 of them (big-eared and
long-faced cats) carry the ear label over the crown between the ears, one ear piece, which this check
counts as a failure.

Usage::

    python benchmarks/check_real_sketches.py SKETCH_DIR --out-dir /tmp/real --sheet docs/img/real_sketches.png
        [--weights DIR] [--seed 0] [--from-mask] [--pieces] [--subject {human,cat}]

Prints one line per sketch and a summary; writes a contact sheet (sketch as framed, mask, front, left,
right, back previews) when ``--sheet`` is given; the mask column is the job's mask_color.png, in the
palette of the networks' label set (seg2cat's for cats). Exit code 1 when a criterion fails, 2 when the
cat networks are missing.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
REQUIRED = {"skin": ("skin",), "hair": ("hair",), "eyes": ("l_eye", "r_eye"), "nose": ("nose",),
            "lips": ("u_lip", "l_lip")}
SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".json", ".bmp")
#: Cat criteria (module docstring): head width range (metres), share of a class's vertices a piece must
#: hold to count, fewest mouth vertices for a muzzle.
CAT_WIDTH_M = (0.15, 0.38)
PIECE_SHARE = 0.05
MIN_MOUTH_VERTICES = 20


def check(result: dict, out: Path) -> dict:
    """The criteria for one job: ``{"main_component", "width_m", "mesh_width_m", "missing", "ok"}``."""
    from backend.export import read_ply
    from backend.labels import LABEL_IDS

    frac = float(result["mesh"]["kept_face_fraction"])
    ply = read_ply((out / "mesh.ply").read_bytes())
    head = ~np.isin(ply["label"], [LABEL_IDS["neck"], LABEL_IDS["neck_l"], LABEL_IDS["cloth"]])
    xs = ply["vertices"][head, 0]
    width = float(xs.max() - xs.min()) if len(xs) else 0.0
    classes = result["class_vertex_counts"]
    missing = [k for k, names in REQUIRED.items() if not any(classes.get(n, 0) > 0 for n in names)]
    ok = frac >= 0.95 and 0.15 <= width <= 0.35 and not missing
    return {"main_component": frac, "width_m": width, "mesh_width_m": float(result["bbox_m"]["size"][0]),
            "missing": missing, "ok": ok}


def label_pieces(labels: np.ndarray, faces: np.ndarray, class_id: int, min_share: float = PIECE_SHARE) -> list[int]:
    """Vertex counts of the pieces of one class on a mesh, largest first, crumbs left out.

    Args:
        labels: ``(V,)`` int label id per vertex; faces: ``(F, 3)`` int vertex indices.
        class_id: the class; min_share: a piece counts when it holds at least this share of the vertices
            labelled ``class_id`` (vertices joined by no face of the class are pieces of one vertex).
    Returns:
        The counted pieces' vertex counts; ``[]`` when no vertex has the class. A piece is a connected
        component of the faces whose three vertices all carry ``class_id``.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    labels, faces = np.asarray(labels), np.asarray(faces, np.int64).reshape(-1, 3)
    inside = labels == class_id
    if not inside.any():
        return []
    own = faces[inside[faces].all(1)]
    edges = np.concatenate([own[:, [0, 1]], own[:, [1, 2]], own[:, [2, 0]]])
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(len(labels), len(labels)))
    _, component = connected_components(graph, directed=False)
    sizes = np.bincount(component[inside])
    sizes = sizes[sizes >= max(min_share * inside.sum(), 1)]
    return sorted(sizes.tolist(), reverse=True)


def cat_criteria(vertices: np.ndarray, faces: np.ndarray, labels: np.ndarray, kept_face_fraction: float) -> dict:
    """The cat criteria (module docstring) on one mesh in seg2cat labels.

    Args:
        vertices: ``(V, 3)`` metres; faces: ``(F, 3)`` int; labels: ``(V,)`` seg2cat ids;
        kept_face_fraction: share of the raw surface's faces in its largest component.
    Returns:
        ``{"main_component", "width_m" (x extent of all vertices, metres), "ear_pieces", "eye_pieces",
        "mouth_vertices", "failed" (names of the failed criteria: main_component, width, ears, eyes,
        muzzle), "ok"}``.
    """
    from backend.labels import CAT

    ids = CAT.ids
    xs = np.asarray(vertices)[:, 0]
    width = float(xs.max() - xs.min()) if len(xs) else 0.0
    ears = len(label_pieces(labels, faces, ids["ear"]))
    eyes = len(label_pieces(labels, faces, ids["eyes"]))
    mouth = int((np.asarray(labels) == ids["mouth"]).sum())
    tests = {"main_component": kept_face_fraction >= 0.95, "width": CAT_WIDTH_M[0] <= width <= CAT_WIDTH_M[1],
             "ears": ears == 2, "eyes": eyes == 2, "muzzle": mouth >= MIN_MOUTH_VERTICES}
    failed = [name for name, passed in tests.items() if not passed]
    return {"main_component": float(kept_face_fraction), "width_m": width, "ear_pieces": ears, "eye_pieces": eyes,
            "mouth_vertices": mouth, "failed": failed, "ok": not failed}


def check_cat(result: dict, out: Path) -> dict:
    """:func:`cat_criteria` of one cat job: ``out/mesh.ply`` and ``result["mesh"]["kept_face_fraction"]``.

    Raises:
        OSError: no ``mesh.ply`` in ``out``; ValueError: not an S3D mesh.ply.
    """
    from backend.export import read_ply

    ply = read_ply((out / "mesh.ply").read_bytes())
    return cat_criteria(ply["vertices"], ply["faces"], ply["label"], float(result["mesh"]["kept_face_fraction"]))


def classify_pieces(vertices: np.ndarray, faces: np.ndarray, max_pieces: int = 5, rays: int = 50) -> list[dict]:
    """The pieces of a surface besides its largest, largest first (at most ``max_pieces``).

    Args:
        vertices: ``(V, 3)`` float, any unit; faces: ``(F, 3)`` int.
    Returns:
        ``[{"face_fraction": share of all faces, "enclosed": bool}, ...]``. A piece is enclosed when rays
        from ``rays`` of its vertices (seeded choice) hit the largest piece in all six axis directions for
        at least 90 % of them: it lies inside the kept surface, not beside it.
    """
    import trimesh

    parts = sorted(trimesh.Trimesh(vertices, faces, process=False).split(only_watertight=False),
                   key=lambda m: -len(m.faces))
    total = sum(len(m.faces) for m in parts)
    out = []
    for piece in parts[1:max_pieces + 1]:
        pick = np.random.default_rng(0).choice(len(piece.vertices), min(rays, len(piece.vertices)), replace=False)
        pts = piece.vertices[pick]
        inside = np.ones(len(pts), bool)
        for d in np.concatenate([np.eye(3), -np.eye(3)]):
            _, ray_idx, _ = parts[0].ray.intersects_location(pts, np.repeat(d[None], len(pts), 0), multiple_hits=False)
            inside &= np.isin(np.arange(len(pts)), ray_idx)
        out.append({"face_fraction": len(piece.faces) / total, "enclosed": bool(inside.mean() >= 0.9)})
    return out


def sheet_row(out: Path, tile: int = 128) -> np.ndarray:
    from PIL import Image

    names = ["sketch_framed.png", "mask_color.png", "views/front.png", "views/left.png", "views/right.png",
             "views/back.png"]
    tiles = []
    for n in names:
        p = out / n
        if p.is_file():
            im = Image.open(p).convert("RGB")
            im.thumbnail((tile, tile))
            canvas = Image.new("RGB", (tile, tile), (255, 255, 255))
            canvas.paste(im, ((tile - im.size[0]) // 2, (tile - im.size[1]) // 2))
            tiles.append(np.asarray(canvas))
        else:
            tiles.append(np.full((tile, tile, 3), 255, np.uint8))
    return np.hstack(tiles)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("sketch_dir")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--sheet", default=None)
    p.add_argument("--weights", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--from-mask", action="store_true")
    p.add_argument("--tile", type=int, default=128, help="pixels a side of each sheet tile")
    p.add_argument("--pieces", action="store_true",
                   help="also say which dropped surface pieces are enclosed cavities and which are floaters")
    p.add_argument("--subject", choices=("human", "cat"), default="human",
                   help="networks and criteria: human heads (default) or cat heads (ears, eyes, muzzle)")
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    import backend.mesh as mesh_module

    pieces: list[dict] = []
    keep_largest = mesh_module.largest_component
    if args.pieces:  # look at the raw surface on its way through the clean-up (the pipeline is unchanged)
        def recording(vertices, faces):
            pieces[:] = classify_pieces(vertices, faces)
            return keep_largest(vertices, faces)

        mesh_module.largest_component = recording

    try:
        return _run(args, pieces)
    finally:
        mesh_module.largest_component = keep_largest


def report_line(name: str, c: dict, result: dict, subject: str) -> str:
    """One sketch's line: ``c`` from :func:`check` (human) or :func:`check_cat` (cat), widths in metres."""
    head = f"{name:<28} {'ok  ' if c['ok'] else 'FAIL'} main component {c['main_component']:.1%}, "
    tail = f"{result['timings_s']['total']:.1f} s, framing {result['framing']['method']}"
    if subject == "cat":
        return (head + f"width {c['width_m']:.3f} m, ear pieces {c['ear_pieces']}, eye pieces {c['eye_pieces']}, "
                f"mouth vertices {c['mouth_vertices']}, failed {c['failed'] or 'none'}, " + tail)
    box = " x ".join(f"{v:.3f}" for v in result["bbox_m"]["size"])
    return head + f"head width {c['width_m']:.3f} m, mesh bbox {box} m, missing {c['missing'] or 'none'}, " + tail


def _run(args: argparse.Namespace, pieces: list[dict]) -> int:
    from PIL import Image

    from backend.pipeline import GenerateOptions, PipelineError, generate, load_models

    try:
        models = load_models(args.weights, "auto", need_sketch=not args.from_mask, subject=args.subject)
    except PipelineError as e:
        if args.subject == "human":
            raise
        print(f"cannot load the cat networks [{e.code}]: {e}", file=sys.stderr)
        return 2
    rows, failures = [], 0
    inputs = sorted(q for q in Path(args.sketch_dir).iterdir() if q.suffix.lower() in SUFFIXES)
    for q in inputs:
        out = Path(args.out_dir) / q.stem
        try:
            r = generate(q, out, GenerateOptions(seed=args.seed, from_mask=args.from_mask, formats=("ply", "glb"),
                                                 subject=args.subject), models=models)
        except PipelineError as e:
            print(f"{q.name:<28} FAILED [{e.code}] {e}")
            failures += 1
            continue
        c = (check_cat if args.subject == "cat" else check)(r, out)
        failures += not c["ok"]
        print(report_line(q.name, c, r, args.subject))
        if args.pieces:
            print(f"{'':<28} dropped pieces: " + (", ".join(
                f"{d['face_fraction']:.1%} {'enclosed' if d['enclosed'] else 'outside'}" for d in pieces) or "none"))
        rows.append(sheet_row(out, args.tile))
    print(f"{len(inputs) - failures} of {len(inputs)} sketches meet every criterion")
    if args.sheet and rows:
        Path(args.sheet).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.vstack(rows)).save(args.sheet, optimize=True)
        print(f"sheet: {args.sheet} (columns: framed sketch, mask, front, left, right, back)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
