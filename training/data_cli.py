"""``s3d-data``: SynHead data generation and contact sheets (docs/synhead.md).

    s3d-data synth --out DIR --num N --seed S --views V --workers W [--persp P] [--subject human|cat]
    s3d-data preview DIR --out sheet.png [--count 8] [--sketches-only [--real FOLDER]]
    s3d-data framing DIR --out backend/canonical_framing.json [--split all|train|test]
    s3d-data framing /work/data/syncat --split train --out backend/canonical_framing_seg2cat.json
    s3d-data relabel DIR [--workers W]
    s3d-data fill-cavities DIR [--workers W]
    s3d-data pack-sketches --data DIR[:DIR...] --out FILE.tar.gz [--max-mib M] [--limit N] [--split train]
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def _default_cache_env() -> None:
    """Keep anny's cache inside the repository when the caller did not choose one."""
    repo = Path(__file__).resolve().parent.parent
    os.environ.setdefault("ANNY_CACHE_DIR", str(repo / ".cache" / "anny"))
    os.environ.setdefault("XDG_CACHE_HOME", str(repo / ".cache" / "xdg"))


def _framing(folder: str, out: str, split: str) -> int:
    """``s3d-data framing``: measure the canonical framing of the samples of ``split`` in ``folder`` (median
    sketch content box, and the landmarks and head box of the masks in the samples' label set: ``eye_center``,
    ``eye_mouth_distance``, ``head_box``; training/synhead/writer.py) and write it to ``out`` as JSON
    (normalised image coordinates, y down). Returns the exit status: 2 for no usable sample or mixed label
    sets."""
    import json

    from backend.labels import label_set
    from backend.weights import atomic_write_text
    from training.datasets import DataError
    from training.synhead import GENERATOR_VERSION, TEST_SEEDS
    from training.synhead.writer import canonical_framing, canonical_landmarks

    entries = []
    for p in sorted(Path(folder).glob("s*/sample.json")):
        e = json.loads(p.read_text())
        is_test = e.get("split") == "test" or TEST_SEEDS[0] <= int(e.get("seed", -1)) <= TEST_SEEDS[1]
        if split == "all" or (split == "test") == is_test:
            entries.append(e)
    names = sorted({str(e.get("label_set", "celebamask-hq-19")) for e in entries})
    framing = canonical_framing(entries)
    if framing is None or len(names) != 1:
        why = f"label sets {', '.join(names)} mixed" if len(names) > 1 else "no complete samples with ink"
        print(f"s3d-data framing: {why} in {folder} (split {split})", file=sys.stderr)
        return 2
    labels = label_set(names[0])
    try:
        framing.update(canonical_landmarks(folder, entries, labels) or {})
    except DataError as e:
        print(f"s3d-data framing: {e}", file=sys.stderr)
        return 2
    versions = sorted({str(e.get("generator_version", GENERATOR_VERSION)) for e in entries})
    generator = {"syncat": "SynCat"}.get(str(entries[0].get("generator", "synhead")), "SynHead")
    seeds = "" if split == "all" else f" {split}-split"
    framing["label_set"] = labels.name
    framing["source"] = (f"median ink bounding box of {framing['n']}{seeds} {generator} sketches (generator "
                         f"{', '.join(versions)}, {folder}); landmarks and head box: medians over the same "
                         f"samples' masks ({labels.name}); normalised image coordinates, y down")
    atomic_write_text(out, json.dumps(framing, indent=1) + "\n")
    print(json.dumps(framing))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="s3d-data", description="SynHead synthetic sketch / mask / 3D head data")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("synth", help="generate samples (resumable: complete samples are skipped)")
    p.add_argument("--out", required=True, help="output folder (manifest.json and one folder per sample)")
    p.add_argument("--num", type=int, required=True, help="number of samples (seeds S .. S+N-1)")
    p.add_argument("--seed", type=int, default=0, help="first seed (seeds 0..199 are the test split)")
    p.add_argument("--views", type=int, default=4, help="orthographic views per head: 1..4 of front, back, left, right")
    p.add_argument("--persp", type=int, default=0, help="random perspective views per head (persp0..), 128^2")
    p.add_argument("--workers", type=int, default=1, help="worker processes")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--subject", choices=["human", "cat"], default="human",
                   help="human: SynHead heads (CelebAMask-HQ labels); cat: SynCat cat heads (seg2cat labels, "
                        "docs/syncat.md)")
    q = sub.add_parser("preview", help="contact sheet: sketch, mask, RGB, back view per sample")
    q.add_argument("dir", help="a SynHead folder with manifest.json")
    q.add_argument("--out", required=True, help="PNG to write")
    q.add_argument("--count", type=int, default=8, help="number of samples")
    q.add_argument("--start", type=int, default=0, help="index of the first sample in the manifest")
    q.add_argument("--sketches-only", action="store_true", help="a grid of sketches only (4 per row)")
    q.add_argument("--real", default=None, help="folder of real drawings to show in a first row (with --sketches-only)")
    f = sub.add_parser("framing", help="canonical framing (median sketch content box; eye centre, "
                                      "eye-mouth distance and head box of the masks) of a SynHead or SynCat "
                                      "folder, in the folder's label set")
    f.add_argument("dir", help="a SynHead or SynCat folder (reads s*/sample.json)")
    f.add_argument("--out", required=True, help="JSON to write, e.g. backend/canonical_framing.json (SynHead) "
                                                "or backend/canonical_framing_seg2cat.json (SynCat)")
    f.add_argument("--split", default="all", choices=["all", "train", "test"],
                   help="which samples (train never includes the test seeds 0..199)")
    r = sub.add_parser("relabel", help="upgrade the 3D point labels and colours of an older SynHead folder "
                                       "(< 0.3.0) to those of the visible surface, without re-rendering")
    r.add_argument("dir", help="a SynHead folder with manifest.json")
    r.add_argument("--workers", type=int, default=1, help="worker processes")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    c = sub.add_parser("fill-cavities", help="count the enclosed free space of each head (the mouth cavity behind "
                                             "the lips, other hidden voids) as inside in its 3D points")
    c.add_argument("dir", help="a SynHead folder with manifest.json (changed in place; cp -al it first to keep "
                               "the original)")
    c.add_argument("--workers", type=int, default=1, help="worker processes")
    c.add_argument("--no-progress", action="store_true", help="no progress bar")
    k = sub.add_parser("pack-sketches", help="a sketch-only copy (sketch, strokes, label map) of SynHead folders in "
                                             "one .tar.gz, to train the sketch network on another machine")
    k.add_argument("--data", required=True, help="SynHead folder, or several joined with ':'")
    k.add_argument("--out", required=True, help="archive to write (NAME.tar.gz holds the folder NAME/)")
    k.add_argument("--split", default="train", choices=["train", "test", "all"],
                   help="which samples (train never includes the test seeds)")
    k.add_argument("--limit", type=int, help="at most this many samples")
    k.add_argument("--max-mib", type=float, help="stop adding samples at this archive size in MiB")
    args = parser.parse_args(argv)
    _default_cache_env()
    if args.cmd == "pack-sketches":
        from training.datasets import DataError
        from training.pack import pack_sketches

        try:
            summary = pack_sketches(args.data, args.out, args.split, args.limit, args.max_mib)
        except (DataError, ValueError) as e:
            print(f"s3d-data pack-sketches: {e}", file=sys.stderr)
            return 2
        print(f"{summary['count']} samples (seeds {summary['seed_min']}..{summary['seed_max']}) in {summary['out']} "
              f"({summary['bytes'] / 2 ** 20:.1f} MiB; unpack with tar -xzf, then --data .../{summary['folder']})")
        return 0
    if args.cmd == "synth":
        if args.num < 0 or args.seed < 0 or args.workers < 1:
            parser.error("--num and --seed must be >= 0 and --workers >= 1")
        if not 1 <= args.views <= 4:
            parser.error("--views must be between 1 and 4 (front, back, left, right)")
        if args.persp < 0:
            parser.error("--persp must be >= 0")
        if args.subject == "cat":
            if args.persp:
                parser.error("--persp is not available with --subject cat")
            from training.syncat.writer import synthesise_cats

            try:
                m = synthesise_cats(args.out, args.num, args.seed, args.views, args.workers,
                                    progress=not args.no_progress)
            except ValueError as e:
                print(f"s3d-data synth: {e}", file=sys.stderr)
                return 2
            print(f"{len(m['samples'])} cat samples in {args.out}/manifest.json")
            return 0
        from training.synhead.writer import synthesise

        try:
            m = synthesise(args.out, args.num, args.seed, args.views, args.workers, progress=not args.no_progress,
                           persp=args.persp)
        except ValueError as e:
            print(f"s3d-data synth: {e}", file=sys.stderr)
            return 2
        print(f"{len(m['samples'])} samples in {args.out}/manifest.json")
        return 0
    if args.cmd == "preview":
        from training.synhead.preview import contact_sheet

        try:
            contact_sheet(args.dir, args.out, args.count, real_dir=args.real, sketches_only=args.sketches_only,
                          start=args.start)
        except FileNotFoundError as e:
            print(f"s3d-data preview: {e}", file=sys.stderr)
            return 2
        print(f"wrote {args.out}")
        return 0
    if args.cmd in ("relabel", "fill-cavities"):
        if args.workers < 1:
            parser.error("--workers must be >= 1")
        from training.synhead import writer

        upgrade, done = {"relabel": (writer.relabel_folder, "relabelled {n} samples in {dir} (points_labels: visible)"),
                         "fill-cavities": (writer.fill_cavities_folder,
                                           "filled the cavities of {n} samples in {dir} "
                                           "(points_occupancy: cavities-filled)")}[args.cmd]
        try:
            n = upgrade(args.dir, args.workers, progress=not args.no_progress)
        except FileNotFoundError as e:
            print(f"s3d-data {args.cmd}: {e} (a SynHead folder has manifest.json and s*/sample.json)",
                  file=sys.stderr)
            return 2
        print(done.format(n=n, dir=args.dir))
        return 0
    if args.cmd == "framing":
        return _framing(args.dir, args.out, args.split)
    return 2


if __name__ == "__main__":
    sys.exit(main())
