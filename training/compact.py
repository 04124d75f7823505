"""A run's checkpoint small enough for git: a warm restart, not a resume.

A training ``checkpoint.pt`` holds the raw weights, their moving average and Adam's two moments in float32
(67 MB for the 1.5x sketch network). A run that is continued later on this CPU continues by warm start
(``s3d-train ... --init-from FILE``: weights copied, optimiser and schedule afresh), which needs only the
weights the run stands for (:func:`training.loop.inference_state`, the moving average when there is one).
This writes those in float16 (their float32 values round to about 3 significant digits, far below the
noise of one training step) with the run's ``meta`` (config, recipe, data, command), step and minutes, in
the checkpoint layout :func:`training.loop.read_parameters` reads.

Usage: ``python -m training.compact RUN_DIR OUT.pt``.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from training.loop import inference_state, load_checkpoint


def _half(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` with its floating tensors in float16 and integer buffers unchanged."""
    return {k: (v.half() if v.is_floating_point() else v) for k, v in state.items()}


def compact_checkpoint(run: str | Path, out: str | Path) -> dict[str, Any]:
    """Write ``out`` from ``run/checkpoint.pt``: floating tensors of the inference weights in float16, integer
    buffers unchanged, no optimiser state; for an adversarial run also the discriminator's weights in
    float16 (``discriminator``; :func:`training.adversarial.warm_start_discriminator` reads them).
    Returns ``{"out", "bytes", "step", "tensors"}``.

    Raises:
        FileNotFoundError: no ``checkpoint.pt`` in ``run``.
    """
    ck = load_checkpoint(Path(run) / "checkpoint.pt")
    state = _half(inference_state(ck))
    small = {"model": state, "model_ema": None, "step": int(ck["step"]), "elapsed_s": float(ck["elapsed_s"]),
             "meta": {**ck["meta"], "compacted_from": str(Path(run) / "checkpoint.pt")}}
    aux = ck.get("auxiliary") or {}
    if "discriminator" in aux:  # an adversarial run: the discriminator's weights too, so the game goes on
        small["discriminator"] = _half(aux["discriminator"])
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    torch.save(small, tmp)
    tmp.replace(out)
    return {"out": str(out), "bytes": out.stat().st_size, "step": small["step"], "tensors": len(state)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.compact", description=__doc__.splitlines()[0])
    p.add_argument("run", help="run folder holding checkpoint.pt")
    p.add_argument("out", help="file to write (e.g. training/checkpoints/NAME.pt)")
    args = p.parse_args(argv)
    print(compact_checkpoint(args.run, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
