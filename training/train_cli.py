"""``s3d-train``: train the two networks and export trained runs to ``weights/`` with model cards.

    s3d-train mask2triplane --data DIR --profile lite [--steps N | --minutes M] --out DIR [--resume]
    s3d-train sketch2mask   --data DIR --profile lite [--steps N | --minutes M] --out DIR [--resume]
                            --mask-encoder RUN/checkpoint.pt [--no-sv] [--no-aug]
    s3d-train export RUN_DIR --weights weights/ [--name mask2triplane_lite] [--mirror-average]
                     [--semantic-logit-adjustment TAU]
    s3d-train interpolate BASE RUN_DIR --alpha 0.5 --weights weights/ [--name ...] [--mirror-average]

Device agnostic (``--device auto|cpu|cuda``); several GPUs with
``torchrun --nproc_per_node K -m training.train_cli mask2triplane ...`` (DistributedDataParallel).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from backend.models.card import ModelCard


def _json_dict(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not JSON: {e}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object, e.g. '{\"batch\": 8}'")
    return value


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="SynHead folder (with manifest.json), or several joined with "
                                                 f"{os.pathsep!r} (read as one training set)")
    p.add_argument("--profile", default="lite", choices=["lite", "paper"])
    p.add_argument("--steps", type=int, help="stop after this many optimiser steps")
    p.add_argument("--minutes", type=float, help="stop after this many minutes of training")
    p.add_argument("--out", required=True, help="run folder: checkpoint.pt, log.jsonl")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--init-from", help="warm start: parameters of an earlier run's checkpoint.pt or weights folder "
                                       "(recorded in the card; optimiser and schedule start afresh); for sketch2mask "
                                       "a wider --config-override channels than the source's is grown without "
                                       "changing its predictions (training/widen.py)")
    p.add_argument("--batch", type=int, help="examples per step (default from the recipe)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--workers", type=int, default=0,
                   help="processes that build the next batches while a step trains (0: in the training process); "
                        "the batches are the same for any number (training/prefetch.py). Use the cores the torch "
                        "threads leave free, e.g. 14 beside a GPU")
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
    e.add_argument("--semantic-logit-adjustment", type=float, default=0.0, metavar="TAU",
                   help="mask2triplane: the card tells inference to subtract TAU * log(small_class_weight) from the "
                        "semantic logits of the classes the recipe weighted up (0 = off)")
    _weights_output(e)
    c = sub.add_parser("calibrate", help="fit per-group semantic logit offsets on held-out SynHead heads and write "
                                         "them into a weights card (training/calibration.py)")
    c.add_argument("--kind", required=True, choices=["sketch2mask", "mask2triplane"])
    c.add_argument("--weights", default="weights", help="weights folder (its card is updated in place)")
    c.add_argument("--name", help="weights name (default <kind>_lite)")
    c.add_argument("--data", required=True, help="SynHead folder of heads the network never trained on")
    c.add_argument("--limit", type=int, help="use at most this many heads")
    c.add_argument("--max-offset", type=float, default=3.0, help="offsets are searched in [-M, M]")
    c.add_argument("--step", type=float, default=0.25, help="grid step of the search")
    c.add_argument("--threads", type=int, help="torch CPU threads")
    f = sub.add_parser("fit-prior", help="fit the generator's appearance prior (a Gaussian over its encoder's codes of "
                                         "training heads) and write it into the card (training/prior_fit.py)")
    f.add_argument("--weights", default="weights", help="weights folder (its card is updated in place)")
    f.add_argument("--name", help="weights name (default mask2triplane_lite)")
    f.add_argument("--data", required=True, help="SynHead folder of the heads the generator trained on")
    f.add_argument("--limit", type=int, help="use the first N heads")
    f.add_argument("--shrinkage", type=float, default=0.05, help="covariance shrinkage towards its diagonal")
    f.add_argument("--threads", type=int, help="torch CPU threads")
    a = sub.add_parser("colour-albedo", help="write the albedo of each colour code's training head into the card of a "
                                             "colour-code generator (training/colour_code_fit.py)")
    a.add_argument("--weights", default="weights", help="weights folder (its card is updated in place)")
    a.add_argument("--name", help="weights name (default mask2triplane_lite)")
    a.add_argument("--data", required=True, help="SynHead folder of the heads the generator trained on")
    i = sub.add_parser("interpolate", help="export (1 - alpha) * BASE + alpha * RUN (WiSE-FT weight interpolation)")
    i.add_argument("base", help="the weights RUN was fine-tuned from: a weights folder or a checkpoint.pt")
    i.add_argument("run", help="run folder holding checkpoint.pt (the fine-tuned network)")
    i.add_argument("--alpha", type=float, required=True, help="share of RUN in (0, 1]; 0.5 is WiSE-FT's default")
    _weights_output(i)
    return p


def _weights_output(p: argparse.ArgumentParser) -> None:
    """The options of the commands that write a weights file and its card (export, interpolate)."""
    p.add_argument("--weights", default="weights", help="weights folder")
    p.add_argument("--name", help="weights name (default <kind>_<profile>)")
    p.add_argument("--mirror-average", action="store_true",
                   help="the card tells inference to average with the mirrored input (sketch or mask)")


def export(run: str | Path, weights_dir: str | Path, name: str | None = None,
           mirror_average: bool = False, semantic_logit_adjustment: float = 0.0) -> dict[str, Any]:
    """Write a run's model to ``<weights_dir>/<name>.safetensors`` with its model card; return the card.

    The weights are the checkpoint's :func:`training.loop.inference_state`: the moving average when the
    recipe kept one (``ema_decay > 0``), else the raw weights.

    ``mirror_average`` writes ``"inference": {"mirror_average": true}`` into the card, so inference averages
    each prediction with the mirrored input's: the mirrored sketch's label scores
    (backend/models/sketch2mask.py) or the mirrored mask's field (``Mask2Triplane.planes_from_onehot``).
    ``semantic_logit_adjustment`` tau > 0 (mask2triplane only) writes ``inference.semantic_logit_offsets``:
    ``-tau * log(small_class_weight)`` for the small classes of the run's label set
    (:func:`training.losses.small_classes`; for humans :data:`training.losses.SMALL_CLASSES`), the classes the run's
    recipe weighted up (logit adjustment, Menon et al. ICLR 2021; Mask2Triplane.query).

    Raises:
        ValueError: a logit adjustment for a run that is not a mask2triplane run or whose recipe weights no
            class up.
    """
    from backend.weights import save_weights
    from training.loop import inference_state, load_checkpoint

    ck = load_checkpoint(Path(run) / "checkpoint.pt")
    card = _run_card(ck, run, mirror_average)
    if semantic_logit_adjustment:
        tau, offsets = _semantic_logit_offsets(ck, run, semantic_logit_adjustment)
        card.inference = card.settings
        card.inference.semantic_logit_adjustment_tau, card.inference.semantic_logit_offsets = tau, offsets
    return save_weights(inference_state(ck), card.to_dict(), name or _default_name(ck), weights_dir)


def _semantic_logit_offsets(ck: dict[str, Any], run: str | Path, tau: float) -> tuple[float, dict[str, float]]:
    """``(tau, {label name: -tau * log(small_class_weight)})`` for the small classes of a mask2triplane run.

    Raises:
        ValueError: not a mask2triplane run, a recipe that weights no class up, or tau < 0.
    """
    from backend.models.config import config_labels
    from training.losses import small_classes

    weight = float(ck["meta"]["recipe"].get("small_class_weight", 1.0))
    if ck["meta"]["kind"] != "mask2triplane" or weight <= 1.0 or tau < 0:
        raise ValueError(f"--semantic-logit-adjustment needs a mask2triplane run whose recipe weights the small "
                         f"classes up (small_class_weight > 1) and tau >= 0; {run} is a {ck['meta']['kind']} run "
                         f"with small_class_weight {weight}, tau {tau}")
    offset = round(-tau * math.log(weight), 4)
    labels = config_labels(ck["meta"]["config"])
    return tau, {labels.names[c]: offset for c in small_classes(labels)}


def _default_name(ck: dict[str, Any]) -> str:
    return f"{ck['meta']['kind']}_{ck['meta']['profile']}"


def _run_card(ck: dict[str, Any], run: str | Path, mirror_average: bool) -> ModelCard:
    """The model card of a training checkpoint (without sha256 and name, which ``save_weights`` adds).

    ``label_set`` is the one the run's config serves (:func:`backend.models.config.config_labels`: the
    config's ``label_set``, celebamask-hq-19 for a human run, whose config has none), so the card says which
    subject's masks the network reads or writes.

    Raises:
        LabelSetError: the config's class count does not fit its label set.
    """
    from backend.coords import BOX_SIZE_M
    from backend.models.card import InferenceSettings, ModelCard
    from backend.models.config import config_labels

    meta = ck["meta"]
    training = {"command": meta["command"], "steps": int(ck["step"]), "minutes": round(ck["elapsed_s"] / 60, 1),
                "machine": meta["machine"], "device": meta["device"], "world_size": meta["world_size"],
                "seed": meta["seed"], "recipe": meta["recipe"]}
    if meta.get("mask_encoder"):
        training["mask_encoder"] = meta["mask_encoder"]
    if meta.get("init_from"):
        training["init_from"] = meta["init_from"]
    return ModelCard(kind=meta["kind"], profile=meta["profile"], config=meta["config"],
                     label_set=config_labels(meta["config"]).name, box_size_m=BOX_SIZE_M, data=meta["data"],
                     training=training, metrics={},
                     inference=InferenceSettings(mirror_average=True) if mirror_average else None)


def interpolate(base: str | Path, run: str | Path, alpha: float, weights_dir: str | Path, name: str | None = None,
                mirror_average: bool = False) -> dict[str, Any]:
    """Export ``(1 - alpha) * base + alpha * run`` (every floating-point tensor, BatchNorm statistics
    included) with ``run``'s model card plus ``training.interpolation`` (alpha, and where ``base`` came
    from: source, sha256, steps, command); return the card.

    Weight-space interpolation between a network and its fine-tuned descendant (WiSE-FT: Wortsman et al.,
    "Robust fine-tuning of zero-shot models", CVPR 2022) keeps much of the fine-tuned accuracy and of the
    original's robustness to inputs unlike the fine-tuning data; here the base is an earlier sketch network
    and the run a longer-trained one, and the shift is from SynHead's sketches to people's drawings.
    ``base`` must be an ancestor of ``run`` (its ``--init-from`` chain): unrelated networks of the same
    shape do not interpolate meaningfully, and this function cannot check that.

    Raises:
        ValueError: ``alpha`` outside (0, 1], or the two networks differ in tensor names or shapes.
        FileNotFoundError: ``base`` or ``run`` does not exist.
    """
    import torch

    from backend.weights import save_weights
    from training.loop import command_line, inference_state, load_checkpoint, read_parameters

    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"--alpha must be in (0, 1] (the share of RUN), got {alpha}")
    ck = load_checkpoint(Path(run) / "checkpoint.pt")
    kind = ck["meta"]["kind"]
    base_state, _, base_info = read_parameters(base, kind)
    state = inference_state(ck)
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    if shapes != {k: tuple(v.shape) for k, v in base_state.items()}:
        raise ValueError(f"{base} and {run} are not the same {kind} architecture (tensor names or shapes differ)")
    mixed = {k: torch.lerp(base_state[k].to(v.dtype), v, alpha) if v.is_floating_point() else v.clone()
             for k, v in state.items()}
    card = _run_card(ck, run, mirror_average)
    card.training["interpolation"] = {"alpha": alpha, "base": base_info, "command": command_line(),
                                      "method": "WiSE-FT weight interpolation: (1 - alpha) * base + alpha * run"}
    return save_weights(mixed, card.to_dict(), name or _default_name(ck), weights_dir)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        if args.command == "calibrate":
            from training.calibration import calibrate
            from training.loop import command_line

            if args.threads:
                import torch

                torch.set_num_threads(args.threads)
            record = calibrate(args.weights, args.kind, args.data, args.limit, args.max_offset, args.step,
                               args.name, command_line())
            print(json.dumps(record))
            return 0
        if args.command == "fit-prior":
            from training.loop import command_line
            from training.prior_fit import fit_prior

            if args.threads:
                import torch

                torch.set_num_threads(args.threads)
            print(json.dumps(fit_prior(args.weights, args.data, args.limit, args.name, command_line(), args.shrinkage)))
            return 0
        if args.command == "colour-albedo":
            from training.colour_code_fit import write_colour_albedo
            from training.loop import command_line

            print(json.dumps(write_colour_albedo(args.weights, args.data, args.name, command_line())))
            return 0
        if args.command in ("export", "interpolate"):
            if args.command == "export":
                card = export(args.run, args.weights, args.name, args.mirror_average, args.semantic_logit_adjustment)
            else:
                card = interpolate(args.base, args.run, args.alpha, args.weights, args.name, args.mirror_average)
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
        from training.run_spec import TrainRun

        summary = train(TrainRun.from_namespace(args), ctx)
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
