#!/usr/bin/env python3
"""Build the installable Blender extension: ``dist/<id>-<version>.zip``.

The zip holds, at its root, the add-on (``blender_addon/``: ``blender_manifest.toml``, ``__init__.py``,
``tasks.py``, ``generation.py``, ``batch.py`` and its subpackages ``ui/``, ``scene/``, ``transport/``), plus ``backend/`` (the backend's source, without caches), ``weights/`` (the ``lite`` weights
found in the weights folder: each ``<name>.safetensors`` with its model card ``<name>.json``) and
``backend_requirements.txt`` (``pyproject.toml``'s dependencies without torch). Torch and other
packages are never bundled: the add-on creates the backend's environment on first use (a button in
its preferences) or uses an existing one (preference "Backend Python").

Usage:
    python build_addon.py [--out dist] [--weights-dir weights] [--no-weights] [--all-profiles]

Blender installs the result with Edit > Preferences > Get Extensions > Install from Disk, or
``blender --command extension install-file -r user_default -e dist/s3d_sketch_to_head-0.1.0.zip``.
The zip is reproducible (sorted entries, fixed timestamps) and written atomically.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
ADDON_DIR = ROOT / "blender_addon"
BACKEND_DIR = ROOT / "backend"
SKIP_DIRS = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".hypothesis"}
SKIP_SUFFIXES = {".pyc", ".pyo", ".tmp", ".log"}
FIXED_TIME = (2025, 1, 1, 0, 0, 0)


def manifest(addon_dir: Path = ADDON_DIR) -> dict:
    """The parsed ``blender_manifest.toml``."""
    return tomllib.loads((addon_dir / "blender_manifest.toml").read_text())


def _source_files(folder: Path) -> list[Path]:
    out = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if any(part in SKIP_DIRS or part.startswith(".") for part in rel.parts):
            continue
        if path.is_file() and path.suffix not in SKIP_SUFFIXES:
            out.append(path)
    return out


def addon_files(addon_dir: Path = ADDON_DIR) -> list[tuple[str, Path]]:
    """The add-on's files as ``(name in the zip, path)``, subfolders included.

    Raises:
        SystemExit: a folder with Python modules but no ``__init__.py`` (Blender could not import them), or
            no ``blender_manifest.toml`` / ``__init__.py`` at the top.
    """
    files = _source_files(addon_dir)
    names = {p.relative_to(addon_dir).as_posix() for p in files}
    missing = [n for n in ("blender_manifest.toml", "__init__.py") if n not in names]
    for folder in sorted({p.parent for p in files if p.suffix == ".py"}):
        rel = folder.relative_to(addon_dir).as_posix()
        if rel != "." and f"{rel}/__init__.py" not in names:
            missing.append(f"{rel}/__init__.py")
    if missing:
        raise SystemExit(f"build_addon: the add-on lacks {', '.join(missing)}")
    return [(p.relative_to(addon_dir).as_posix(), p) for p in files]


def lite_weights(weights_dir: Path, all_profiles: bool = False) -> list[Path]:
    """Cards and safetensors of the weights to bundle: every card whose profile is ``lite`` (or unset).

    Raises:
        SystemExit: a card whose safetensors file is missing.
    """
    files: list[Path] = []
    for card_path in sorted(weights_dir.glob("*.json")):
        try:
            card = json.loads(card_path.read_text())
        except (OSError, ValueError) as e:
            raise SystemExit(f"build_addon: model card {card_path} is not readable JSON: {e}") from None
        profile = card.get("profile") or (card.get("config") or {}).get("profile") or "lite"
        if profile != "lite" and not all_profiles:
            print(f"build_addon: skipping {card_path.stem} (profile {profile!r}, only 'lite' is bundled)")
            continue
        weights = card_path.with_suffix(".safetensors")
        if not weights.is_file():
            raise SystemExit(f"build_addon: {card_path} has no {weights.name}; retrain or remove the card")
        files += [card_path, weights]
    return files


def backend_requirements(pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    """``[project].dependencies`` without torch (the add-on installs ``torch==2.13.0`` first, pinned)."""
    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    return [d for d in deps if not d.replace(" ", "").lower().startswith("torch")]


def build(out_dir: Path, weights_dir: Path | None, all_profiles: bool = False) -> Path:
    """Write the extension zip into ``out_dir`` and return its path."""
    man = manifest()
    name = f"{man['id']}-{man['version']}.zip"
    entries: list[tuple[str, Path | bytes]] = []
    entries += addon_files()
    for path in _source_files(BACKEND_DIR):
        entries.append(("backend/" + path.relative_to(BACKEND_DIR).as_posix(), path))
    if weights_dir is not None and weights_dir.is_dir():
        for path in lite_weights(weights_dir, all_profiles):
            entries.append(("weights/" + path.name, path))
    reqs = "# the backend's requirements besides torch==2.13.0 (installed first)\n" + "\n".join(backend_requirements()) + "\n"
    entries.append(("backend_requirements.txt", reqs.encode()))
    if (ROOT / "LICENSE").is_file():
        entries.append(("LICENSE", ROOT / "LICENSE"))
    bad = [arc for arc, _ in entries if arc.split("/")[0] in ("torch", "site-packages") or "/torch/" in arc]
    if bad:
        raise SystemExit(f"build_addon: refusing to bundle torch files: {bad[:3]}")
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / name
    tmp = out_dir / f".{name}.tmp{os.getpid()}"
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
            for arc, src in sorted(entries, key=lambda e: e[0]):
                info = zipfile.ZipInfo(arc, date_time=FIXED_TIME)
                info.compress_type = zipfile.ZIP_STORED if arc.endswith(".safetensors") else zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                zf.writestr(info, src if isinstance(src, bytes) else src.read_bytes())
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    return target


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Build the S3D Blender extension zip")
    p.add_argument("--out", default=str(ROOT / "dist"), help="output folder (default: dist/)")
    p.add_argument("--weights-dir", default=str(ROOT / "weights"), help="weights to bundle (default: weights/)")
    p.add_argument("--no-weights", action="store_true", help="bundle no weights")
    p.add_argument("--all-profiles", action="store_true", help="bundle every profile, not only 'lite'")
    args = p.parse_args(argv)
    target = build(Path(args.out), None if args.no_weights else Path(args.weights_dir), args.all_profiles)
    with zipfile.ZipFile(target) as zf:
        n = len(zf.namelist())
        n_weights = sum(1 for f in zf.namelist() if f.endswith(".safetensors"))
    print(f"built {target} ({target.stat().st_size / 1e6:.1f} MB, {n} files, {n_weights} weight files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
