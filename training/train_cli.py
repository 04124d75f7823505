"""``s3d-train``: train the two networks and export trained runs to ``weights/`` with model cards.

    s3d-train mask2triplane --data DIR --profile lite [--steps N | --minutes M] --out DIR [--resume]
    s3d-train sketch2mask   --data DIR --profile lite [--steps N | --minutes M] --out DIR [--resume]
                            --mask-encoder RUN/checkpoint.pt [--no-sv] [--no-aug]
    s3d-train export RUN_DIR --weights weights/ [--name mask2triplane_lite] [--mirror-average]

Device agnostic (``--device auto|cpu|cuda``); several GPUs with
``torchrun --nproc_per_node K -m training.train_cli mask2triplane ...`` (DistributedDataParallel).
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from typing import Any


def _json_dict(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not JSON: {e}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object, e.g. '{\"batch\": 8}'")
    return value


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="SynHead folder (with manifest.json)")
    p.add_argument("--profile", default="lite", choices=["lite", "paper"])
    p.add_argument("--steps", type=int, help="stop after this many optimiser steps")
    p.add_argument("--minutes", type=float, help="stop after this many minutes of training")
    p.add_argument("--out", required=True, help="run folder: checkpoint.pt, log.jsonl")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--init-from", help="warm start: parameters of an earlier run's checkpoint.pt or weights folder "
                                       "(recorded in the card; optimiser and schedule start afresh)")
    p.add_argument("--batch", type=int, help="examples per step (default from the recipe)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--limit", type=int, help="use at most this many training samples")
    p.add_argument("--checkpoint-minutes", type=float, default=4.0)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--config-override", type=_json_dict, help="JSON object merged into the profile's config")
    p.add_argument("--recipe-override", type=_json_dict, help="JSON object of recipe fields")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="s3d-train", description="train the S3D networks on SynHead")
    sub = p.add_subparsers(dest="command", required=True)
    m = sub.add_parser("mask2triplane", help="mask -> tri-plane generator")
    _common(m)
    m.add_argument("--no-render-loss", action="store_true", help="3D point losses only")
    s = sub.add_parser("sketch2mask", help="sketch -> mask U-Net (S3D)")
    _common(s)
    s.add_argument("--mask-encoder", help="mask2triplane checkpoint.pt or weights folder (target of L_SV)")
    s.add_argument("--no-sv", action="store_true", help="ablation: no style-vector loss")
    s.add_argument("--no-aug", action="store_true", help="ablation: no augmentation")
    e = sub.add_parser("export", help="write a run's checkpoint to weights/<name>.{safetensors,json}")
    e.add_argument("run", help="run folder holding checkpoint.pt")
    e.add_argument("--weights", default="weights", help="weights folder")
    e.add_argument("--name", help="weights name (default <kind>_<profile>)")
    e.add_argument("--mirror-average", action="store_true",
                   help="sketch2mask: the card tells inference to average with the mirrored sketch")
    return p


def export(run: str | Path, weights_dir: str | Path, name: str | None = None,
           mirror_average: bool = False) -> dict[str, Any]:
    """Write a run's model to ``<weights_dir>/<name>.safetensors`` with its model card; return the card.

    The weights are the checkpoint's :func:`training.loop.inference_state`: the moving average when the
    recipe kept one (``ema_decay > 0``), else the raw weights.

    ``mirror_average`` (sketch2mask only) writes ``"inference": {"mirror_average": true}`` into the card, so
    inference averages each prediction with the mirrored sketch's (backend/models/sketch2mask.py).

    Raises:
        ValueError: ``mirror_average`` for a run that is not a sketch2mask run.
    """
    from backend.frame import BOX_SIZE_M
    from backend.models.loading import LABEL_SET
    from backend.weights import save_weights
    from training.loop import inference_state, load_checkpoint

    ck = load_checkpoint(Path(run) / "checkpoint.pt")
    meta = ck["meta"]
    name = name or f"{meta['kind']}_{meta['profile']}"
    card = {
        "kind": meta["kind"], "profile": meta["profile"], "config": meta["config"], "label_set": LABEL_SET,
        "box_size_m": BOX_SIZE_M, "data": meta["data"],
        "training": {"command": meta["command"], "steps": int(ck["step"]), "minutes": round(ck["elapsed_s"] / 60, 1),
                     "machine": meta["machine"], "device": meta["device"], "world_size": meta["world_size"],
                     "seed": meta["seed"], "recipe": meta["recipe"]},
        "metrics": {},
    }
    if meta.get("mask_encoder"):
        card["training"]["mask_encoder"] = meta["mask_encoder"]
    if meta.get("init_from"):
        card["training"]["init_from"] = meta["init_from"]
    if mirror_average:
        if meta["kind"] != "sketch2mask":
            raise ValueError(f"--mirror-average applies to sketch2mask runs; {run} is a {meta['kind']} run")
        card["inference"] = {"mirror_average": True}
    return save_weights(inference_state(ck), card, name, weights_dir)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        if args.command == "export":
            card = export(args.run, args.weights, args.name, args.mirror_average)
            print(json.dumps({"name": card["name"], "sha256": card["sha256"]}))
            return 0
        if args.steps is None and args.minutes is None:
            print("s3d-train: give --steps N or --minutes M", file=sys.stderr)
            return 2
        from training.loop import setup_run

        ctx = setup_run(args.device, args.threads)
        if ctx.is_main:
            print(f"device: {ctx.device} ({ctx.device_reason}); world size {ctx.world_size}", file=sys.stderr)
        if args.command == "mask2triplane":
            from training.train_mask2triplane import train
        else:
            from training.train_sketch2mask import train
        summary = train(args, ctx)
        if ctx.is_main:
            print(json.dumps(summary))
        return 0
    except KeyboardInterrupt:
        print("s3d-train: interrupted; the last checkpoint was written", file=sys.stderr)
        return 130
    except Exception as e:  # clear one-line error for data/device/weights problems
        from backend.device import DeviceError
        from backend.weights import WeightsError
        from training.datasets import DataError

        if isinstance(e, (DataError, DeviceError, WeightsError, ValueError, FileNotFoundError)):
            print(f"s3d-train: {e}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
