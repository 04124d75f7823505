"""The ``s3d`` command: ``s3d info`` (more subcommands arrive with the backend)."""
from __future__ import annotations

import argparse
import json
import platform
import sys


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for mod in ("torch", "numpy", "mcubes", "cv2", "PIL", "trimesh", "safetensors", "bpy", "anny"):
        try:
            m = __import__(mod)
            out[mod] = getattr(m, "__version__", None) or getattr(getattr(m, "app", None), "version_string", "present")
        except Exception:  # absent or broken: report, never fail `info`
            out[mod] = None
    return out


def cmd_info(args: argparse.Namespace) -> int:
    """Print versions, the device that would be used and why, and the weights with checksum status."""
    from backend.device import choose_device
    from backend.weights import DEFAULT_WEIGHTS_DIR, list_weights

    choice = choose_device("auto")
    weights = list_weights(args.weights or DEFAULT_WEIGHTS_DIR)
    info = {"versions": _versions(), "device": choice.device, "device_reason": choice.reason,
            "weights_dir": str(args.weights or DEFAULT_WEIGHTS_DIR), "weights": weights}
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print("S3D for Blender")
    for k, v in info["versions"].items():
        print(f"  {k:<12} {v if v is not None else 'not installed'}")
    print(f"device: {choice.device} ({choice.reason})")
    print(f"weights in {info['weights_dir']}:")
    if not weights:
        print("  none found")
    for name, w in weights.items():
        status = f"ok, sha256 {w['sha256'][:12]}... matches its card" if w["ok"] else f"NOT OK: {w['error']}"
        print(f"  {name}: {status}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="s3d", description="S3D: sketch -> 3D head (CVPRW 2025) backend")
    sub = p.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="versions, device and weights status")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.add_argument("--weights", default=None, help="weights folder (default: the bundled weights/)")
    info.set_defaults(func=cmd_info)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
