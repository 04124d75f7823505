"""Before/after check for refactors that must not change behaviour: same inputs, seeds and weights give
the same outputs.

Usage::

    python benchmarks/refactor_equivalence.py OUT_DIR                 # save a run (e.g. before a refactor)
    python benchmarks/refactor_equivalence.py OUT_DIR --compare BEFORE  # run again, compare with BEFORE

Cases: ``examples/head_front.json``, ``examples/head_front.png`` and ``examples/head_long_hair.png`` at grid
resolution 64 and 128 with fixed seeds and the bundled weights, plus a ``from_mask`` job on the ``mask.png``
that the ``head_front.png`` job of the same resolution wrote. Saved per case: the mesh (vertices, faces,
sRGB colours, labels read back from ``mesh.ply``), ``mask.png``, the preview views and ``result.json``.

Compared: vertices within ``--atol`` metres (default 1e-5), faces, colours, labels, masks and views exactly,
``result.json`` keys and values equal except ``timings_s`` and file-system paths. Exit status 1 when any
case differs. Torch runs on one thread so that float reductions are deterministic.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

#: (case name, input path relative to the repository, seed); the mask case is added per resolution.
INPUTS = (
    ("front_json", "examples/head_front.json", 3),
    ("front_png", "examples/head_front.png", 7),
    ("long_hair_png", "examples/head_long_hair.png", 11),
)
RESOLUTIONS = (64, 128)
MASK_SEED = 5
#: result.json keys that legitimately differ between runs (wall time; where the files were written).
IGNORED_KEYS = ("timings_s",)


def _options(seed: int, resolution: int, from_mask: bool = False):
    from backend.pipeline import GenerateOptions

    # small views keep the run short; they still exercise every stage
    return GenerateOptions(seed=seed, resolution=resolution, views=4, formats=("ply",), from_mask=from_mask,
                           view_resolution=64, color_resolution=64)


def _save_case(job_dir: Path, dest: Path, result: dict) -> None:
    """Keep the comparable parts of one job's outputs in ``dest`` (npz + result json)."""
    from PIL import Image

    from backend.export import read_ply

    ply = read_ply((job_dir / "mesh.ply").read_bytes())
    arrays = {"vertices": ply["vertices"], "faces": ply["faces"], "rgb": ply["rgb"], "label": ply["label"],
              "mask": np.asarray(Image.open(job_dir / "mask.png"))}
    for p in sorted((job_dir / "views").glob("*.png")):
        arrays[f"view_{p.stem}"] = np.asarray(Image.open(p))
    dest.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(dest / "arrays.npz", **arrays)
    kept = {k: v for k, v in result.items() if k not in IGNORED_KEYS}
    (dest / "result.json").write_text(json.dumps(kept, indent=1, sort_keys=True) + "\n")


def run_all(out: Path, models) -> list[str]:
    """Run every case into ``out/<case>``; return the case names in order."""
    import tempfile

    from backend.pipeline import generate

    names = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for res in RESOLUTIONS:
            for name, rel, seed in INPUTS:
                case = f"{name}_r{res}"
                job = tmp / case
                result = generate(str(ROOT / rel), job, _options(seed, res), models=models)
                _save_case(job, out / case, result)
                names.append(case)
                print(f"ran {case}", flush=True)
            # a label map the pipeline itself wrote: the from_mask path on a realistic mask
            case = f"from_mask_r{res}"
            src = tmp / f"front_png_r{res}" / "mask.png"
            result = generate(str(src), tmp / case, _options(MASK_SEED, res, from_mask=True), models=models)
            _save_case(tmp / case, out / case, result)
            names.append(case)
            print(f"ran {case}", flush=True)
    (out / "cases.json").write_text(json.dumps(names) + "\n")
    return names


def _json_diff(a: object, b: object, path: str = "") -> list[str]:
    """Paths where two JSON values differ (keys missing on either side included)."""
    if isinstance(a, dict) and isinstance(b, dict):
        diffs = [f"{path}/{k}: only in {'before' if k in a else 'after'}" for k in sorted(set(a) ^ set(b))]
        for k in sorted(set(a) & set(b)):
            diffs += _json_diff(a[k], b[k], f"{path}/{k}")
        return diffs
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _json_diff(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"[:200]]


def compare_case(before: Path, after: Path, atol: float) -> dict:
    """One row of the table: per-part verdicts and the largest vertex difference (metres)."""
    a = dict(np.load(before / "arrays.npz"))
    b = dict(np.load(after / "arrays.npz"))
    row: dict = {}
    same_shape = a["vertices"].shape == b["vertices"].shape
    row["max_dv_m"] = float(np.abs(a["vertices"] - b["vertices"]).max()) if same_shape else float("inf")
    row["vertices"] = same_shape and row["max_dv_m"] <= atol
    row["faces"] = a["faces"].shape == b["faces"].shape and bool((a["faces"] == b["faces"]).all())
    for k in ("rgb", "label", "mask"):
        row[k] = a[k].shape == b[k].shape and bool((a[k] == b[k]).all())
    view_keys = sorted(k for k in set(a) | set(b) if k.startswith("view_"))
    row["views"] = all(k in a and k in b and a[k].shape == b[k].shape and bool((a[k] == b[k]).all())
                       for k in view_keys)
    diffs = _json_diff(json.loads((before / "result.json").read_text()), json.loads((after / "result.json").read_text()))
    row["result_json"] = not diffs
    row["json_diffs"] = diffs[:5]
    return row


def compare(before: Path, after: Path, atol: float) -> bool:
    """Print the table; True when every case is equal."""
    cases = json.loads((before / "cases.json").read_text())
    cols = ("vertices", "faces", "rgb", "label", "mask", "views", "result_json")
    print(f"{'case':<18} {'max |dv| m':>11} " + " ".join(f"{c:>11}" for c in cols))
    ok = True
    for case in cases:
        if not (after / case).exists():
            print(f"{case:<18} missing in the new run")
            ok = False
            continue
        row = compare_case(before / case, after / case, atol)
        ok &= all(row[c] for c in cols)
        print(f"{case:<18} {row['max_dv_m']:>11.2e} " + " ".join(f"{'equal' if row[c] else 'DIFFERS':>11}" for c in cols))
        for d in row["json_diffs"]:
            print(f"    result.json {d}")
    print("ALL EQUAL" if ok else "DIFFERENCES FOUND")
    return ok


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path, help="folder for this run's outputs (created; not committed)")
    p.add_argument("--compare", type=Path, default=None, help="a saved run to compare this run with")
    p.add_argument("--atol", type=float, default=1e-5, help="vertex tolerance in metres (default 1e-5)")
    p.add_argument("--weights", type=Path, default=None, help="weights folder (default: the bundled weights)")
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from backend.pipeline import load_models

    models = load_models(args.weights, "cpu")
    run_all(args.out, models)
    if args.compare is None:
        print(f"saved {args.out}")
        return 0
    return 0 if compare(args.compare, args.out, args.atol) else 1


if __name__ == "__main__":
    sys.exit(main())
