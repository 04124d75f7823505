"""The training loop both networks share: device and DistributedDataParallel set-up, deterministic
per-step randomness, wall-clock or step limits, resumable atomic checkpoints, a progress bar and a JSON
log of the losses.

Randomness: step ``s`` on rank ``r`` draws its data and augmentation from
``numpy.random.default_rng([seed, s, r])`` (training/prefetch.py ``step_rng``, whichever process builds the
batch), so a resumed run sees the same examples it would have seen without the interruption; torch's
generator state is saved in the checkpoint.

Weight averaging: with ``ema_decay > 0`` the loop keeps an exponential moving average of the parameters
and buffers (``torch.optim.swa_utils.AveragedModel``, as EG3D and pix2pix3D keep ``G_ema``) and stores it
as ``model_ema`` in the checkpoint; :func:`inference_state` makes export, evaluation and warm starts use it.
"""
from __future__ import annotations

import io
import json
import math
import os
import platform
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from backend.weights import atomic_write_bytes


@dataclass
class RunContext:
    """Where and how a run executes. ``rank``/``world_size`` come from ``torchrun`` (1 process otherwise)."""

    device: torch.device
    device_reason: str
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """True on rank 0, the process that logs and writes checkpoints."""
        return self.rank == 0


def setup_run(device: str = "auto", threads: int | None = None) -> RunContext:
    """Pick the device (backend/device.py), start DistributedDataParallel when launched by ``torchrun``.

    Raises:
        backend.device.DeviceError: CUDA requested but unavailable.
    """
    from backend.device import choose_device

    if threads:
        torch.set_num_threads(int(threads))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    choice = choose_device(device)
    dev = torch.device(choice.device)
    if world > 1:
        import torch.distributed as dist

        backend = "nccl" if choice.device == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
        if choice.device == "cuda":
            torch.cuda.set_device(local)
            dev = torch.device("cuda", local)
    return RunContext(dev, choice.reason, rank, world, local)


def machine_description() -> str:
    """One line: CPU model and core count, GPU name when CUDA is in use."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    desc = f"{cpu}, {os.cpu_count()} logical cores, torch {torch.__version__} with {torch.get_num_threads()} threads"
    if torch.cuda.is_available():
        desc += f", GPU {torch.cuda.get_device_name(0)}"
    return desc


def command_line() -> str:
    """The command that started this process, shell-quoted (recorded in checkpoints and model cards)."""
    prog = Path(sys.argv[0]).name
    return " ".join([prog] + [shlex.quote(a) for a in sys.argv[1:]])


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """``torch.save`` ``payload`` to ``path`` atomically (temporary file + rename)."""
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (on CPU)."""
    return torch.load(path, map_location="cpu", weights_only=False)


def inference_state(ck: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The weights a checkpoint stands for: the moving average ``model_ema`` when the run kept one (a
    recipe with ``ema_decay > 0``), else the raw ``model`` (``state_dict`` tensors on CPU)."""
    return ck["model_ema"] if ck.get("model_ema") is not None else ck["model"]


def read_parameters(source: str | Path, kind: str) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]]:
    """The parameters of an earlier run: ``(state_dict, architecture config, info)``.

    ``source`` is a training ``checkpoint.pt`` (its :func:`inference_state`) or a weights folder holding
    ``<kind>_<profile>`` (the card is verified first). ``info`` is what to record in a new card: source,
    steps, minutes, command and, for weights, sha256 and the card's own ``init_from``, so the training
    history stays reproducible.

    Raises:
        FileNotFoundError: ``source`` is neither a file nor a folder.
    """
    p = Path(source)
    if p.is_file():
        ck = load_checkpoint(p)
        info: dict[str, Any] = {"source": str(p), "steps": int(ck["step"]),
                                "minutes": round(float(ck["elapsed_s"]) / 60, 1),
                                "command": ck.get("meta", {}).get("command")}
        return inference_state(ck), ck["meta"]["config"], info
    if p.is_dir():
        from backend.models.loading import load_model

        earlier, card = load_model(kind, p, "cpu", label_set=None)  # any label set; warm_start compares them
        info = {"source": str(p), "sha256": card.get("sha256"), "steps": card["training"]["steps"],
                "minutes": card["training"]["minutes"], "command": card["training"]["command"]}
        if card["training"].get("init_from"):
            info["init_from"] = card["training"]["init_from"]
        return earlier.state_dict(), card["config"], info
    raise FileNotFoundError(f"{p}: no checkpoint file or weights folder there")


def warm_start(model: torch.nn.Module, source: str | Path, kind: str, refit: tuple[str, ...] = (),
               expand: tuple[str, ...] = (), fresh: tuple[str, ...] = (),
               widen: Callable[..., dict[str, torch.Tensor]] | None = None) -> dict[str, Any]:
    """Copy the parameters of an earlier run (:func:`read_parameters`) into ``model`` (same architecture,
    same tensor shapes); returns the info to record in the new card as ``training.init_from``.

    Two kinds of named parameter (prefixes) may differ in shape from the source, and are listed in the info:

    * ``refit``: they keep their fresh initialisation (for example the sketch U-Net's style head, whose
      input grows with ``internal_resolution``);
    * ``expand``: a layer that gained trailing inputs (for example the tri-plane decoder's first layer
      when ``decoder_relative_depth`` adds one): the old weights fill the leading block and the new
      entries are zero, so the warm-started network computes exactly what the earlier one did.

    ``fresh``: prefixes of parameters and buffers the model may have and the source lack (a part the new
    config adds, such as the generator's colour mapping); they keep their initialisation and are listed as
    ``fresh`` in the info.

    ``widen`` (optional), ``widen(state, old_channels, model) -> state``: when the source's
    ``config["channels"]`` differ from ``model.cfg["channels"]``, it maps the source's parameters onto the
    wider network first (training/widen.py, function-preserving); the info then lists ``widened_from``.

    Label sets: the source must serve the model's label set (each config's ``label_set``, absent meaning
    celebamask-hq-19; :func:`backend.models.config.config_labels`). A warm start from a human (19-class)
    run into a cat (6-class) network, or back, is refused with :class:`backend.models.config.LabelSetError`
    before any tensor is copied: the class-dependent layers (the mask encoder's and appearance encoder's
    inputs, the decoder's semantic outputs, the sketch U-Net's head) mean different classes, and ``refit``
    is not used for them on purpose, because most of the other weights were shaped by those classes too
    (a 19-class mask encoder has never seen a cat's outline). Train the other set's networks from scratch.

    Raises:
        LabelSetError: the source serves another label set than ``model``.
        FileNotFoundError: ``source`` does not exist.
        RuntimeError: the tensors do not fit ``model`` (a different architecture), or an ``expand``
            tensor shrank.
        ValueError: from ``widen``, for a width that shrinks.
    """
    state, source_cfg, info = read_parameters(source, kind)
    own_cfg = getattr(model, "cfg", None)
    if isinstance(own_cfg, dict) and isinstance(source_cfg, dict):
        from backend.models.config import DEFAULT_LABEL_SET, LabelSetError

        own_set = own_cfg.get("label_set", DEFAULT_LABEL_SET)
        source_set = source_cfg.get("label_set", DEFAULT_LABEL_SET)
        if own_set != source_set:
            raise LabelSetError(f"cannot warm-start a {own_set} network ({own_cfg.get('num_classes')} classes) "
                                f"from {source}, a {source_set} network ({source_cfg.get('num_classes')} "
                                f"classes): train it from scratch (no --init-from)")
    own_channels, source_channels = getattr(model, "cfg", {}).get("channels"), source_cfg.get("channels")
    if (widen is not None and None not in (own_channels, source_channels)
            and list(source_channels) != list(own_channels)):
        state = widen(state, source_channels, model)
        info = {**info, "widened_from": list(source_channels)}
    own = model.state_dict()
    changed = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    refitted = [k for k in changed if refit and k.startswith(refit)]
    expanded = [k for k in changed if expand and k.startswith(expand) and k not in refitted]
    for k in refitted:
        state[k] = own[k]
    for k in expanded:
        old, new = state[k], torch.zeros_like(own[k])
        if old.dim() != new.dim() or any(a > b for a, b in zip(old.shape, new.shape)):
            raise RuntimeError(f"{k}: cannot expand {tuple(old.shape)} to {tuple(new.shape)}")
        new[tuple(slice(0, d) for d in old.shape)] = old
        state[k] = new
    added = [k for k in own if k not in state and fresh and k.startswith(fresh)]
    for k in added:
        state[k] = own[k]
    model.load_state_dict(state)
    if refitted:
        info = {**info, "refit": sorted(refitted)}
    if expanded:
        info = {**info, "expanded": sorted(expanded)}
    if added:
        info = {**info, "fresh": sorted(added)}
    return info


@dataclass
class LoopLimits:
    """Stop after ``steps`` optimiser steps or ``minutes`` of training wall-clock time, whichever first."""

    steps: int | None = None
    minutes: float | None = None
    checkpoint_minutes: float = 4.0
    log_every: int = 10
    decay_from: float = 0.7  # learning rate: constant, then cosine down to 10 % over the last 30 % of the run

    def progress(self, step: int, elapsed_s: float) -> float:
        """Fraction of the run done, by whichever limit is nearer."""
        p = 0.0
        if self.steps:
            p = max(p, step / self.steps)
        if self.minutes:
            p = max(p, elapsed_s / (self.minutes * 60.0))
        return min(p, 1.0)

    def lr_factor(self, step: int, elapsed_s: float) -> float:
        """Learning-rate multiplier: 1 until ``decay_from`` of the run, then a cosine down to 0.1 at the end."""
        p = self.progress(step, elapsed_s)
        if p <= self.decay_from:
            return 1.0
        t = (p - self.decay_from) / (1.0 - self.decay_from)
        return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * t))

    def __post_init__(self):
        if self.steps is None and self.minutes is None:
            raise ValueError("give --steps N or --minutes M (or both)")


@dataclass
class LoopState:
    """Where a training run stands: optimiser steps done, wall-clock seconds spent, the logged losses."""

    step: int = 0
    elapsed_s: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)


def run_loop(ctx: RunContext, loss_module: torch.nn.Module, optimizer: torch.optim.Optimizer,
             batch_for_step: Callable[[int], dict[str, torch.Tensor]], out_dir: Path,
             limits: LoopLimits, extra_checkpoint: Callable[[], dict[str, Any]], resume: bool,
             model_for_state: torch.nn.Module, desc: str, ema_decay: float = 0.0) -> LoopState:
    """Run optimiser steps until a limit; ``loss_module(batch)`` returns a dict with a ``loss`` scalar.

    ``batch_for_step(step)`` gives the batch of an optimiser step; it must depend only on the step, the run's
    seed and the rank (training/prefetch.py: ``PrefetchedBatches``, ``step_rng``), so that a resumed run
    continues with the batches an uninterrupted one would have seen.

    Writes ``out_dir/checkpoint.pt`` (``model``, ``optimizer``, ``step``, ``elapsed_s``, torch RNG and
    whatever ``extra_checkpoint()`` adds) every ``checkpoint_minutes`` and at the end, and appends one
    JSON line per ``log_every`` steps to ``out_dir/log.jsonl``. Returns the final state.

    A loss module (or the module a DistributedDataParallel wraps) may define ``after_step(step) -> dict`` (run
    after each optimiser step, its terms are logged: a discriminator's update) and ``auxiliary_state()`` /
    ``load_auxiliary_state(state)`` (saved as ``auxiliary`` in the checkpoint and restored on resume).

    ``ema_decay`` in (0, 1): after every step the moving average ``ema = decay * ema + (1 - decay) * model``
    of parameters and buffers (BatchNorm statistics included) is updated, starting from the weights the
    run starts with; it is saved as ``model_ema`` (and resumed). 0 keeps none.

    Raises:
        ValueError: ``ema_decay`` outside [0, 1).
    """
    from tqdm import tqdm

    if not 0.0 <= ema_decay < 1.0:
        raise ValueError(f"ema_decay must be in [0, 1) (0 = no moving average), got {ema_decay}")

    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = out_dir / "checkpoint.pt"
    # a loss module may train a second player (a discriminator) after each step and keep its state
    hooks = getattr(loss_module, "module", loss_module)
    after_step = getattr(hooks, "after_step", None)
    state = LoopState()
    base_lrs = [g["lr"] for g in optimizer.param_groups]  # before a resumed (decayed) state overwrites them
    resumed_ema = None
    if resume and ckpt_path.is_file():
        ck = load_checkpoint(ckpt_path)
        model_for_state.load_state_dict(ck["model"])
        optimizer.load_state_dict(ck["optimizer"])
        state.step, state.elapsed_s = int(ck["step"]), float(ck["elapsed_s"])
        torch.set_rng_state(ck["torch_rng"])
        resumed_ema = ck.get("model_ema")
        if ck.get("auxiliary") is not None and hasattr(hooks, "load_auxiliary_state"):
            hooks.load_auxiliary_state(ck["auxiliary"])
        if ctx.is_main:
            print(f"resumed from {ckpt_path} at step {state.step} ({state.elapsed_s / 60:.1f} min)", file=sys.stderr)
    elif ckpt_path.is_file() and ctx.is_main:
        print(f"note: {ckpt_path} exists and will be overwritten (use --resume to continue it)", file=sys.stderr)

    ema = None
    if ema_decay > 0:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        # built after a resume has loaded the raw weights; its first update copies them, later ones average
        ema = AveragedModel(model_for_state, multi_avg_fn=get_ema_multi_avg_fn(ema_decay), use_buffers=True)
        if resumed_ema is not None:
            ema.module.load_state_dict(resumed_ema)
            ema.n_averaged.fill_(max(state.step, 1))
        else:
            ema.update_parameters(model_for_state)

    def checkpoint() -> None:
        if not ctx.is_main:
            return
        payload = {"model": model_for_state.state_dict(), "optimizer": optimizer.state_dict(), "step": state.step,
                   "elapsed_s": state.elapsed_s, "torch_rng": torch.get_rng_state()}
        if ema is not None:
            payload["model_ema"] = ema.module.state_dict()
            payload["ema_decay"] = ema_decay
        if hasattr(hooks, "auxiliary_state"):
            payload["auxiliary"] = hooks.auxiliary_state()
        payload.update(extra_checkpoint())
        save_checkpoint(ckpt_path, payload)

    total = limits.steps
    bar = tqdm(total=total, initial=state.step, desc=desc, disable=not ctx.is_main, mininterval=5.0, dynamic_ncols=True)
    log = open(out_dir / "log.jsonl", "a") if ctx.is_main else None
    start = time.monotonic() - state.elapsed_s
    last_ckpt = time.monotonic()
    running: dict[str, float] = {}
    try:
        while True:
            state.elapsed_s = time.monotonic() - start
            stop = (limits.steps is not None and state.step >= limits.steps) or \
                   (limits.minutes is not None and state.elapsed_s >= limits.minutes * 60)
            if ctx.world_size > 1:  # every rank stops at the same step, or DDP would wait forever
                import torch.distributed as dist

                flag = torch.tensor([1.0 if stop else 0.0], device=ctx.device)
                dist.all_reduce(flag, op=dist.ReduceOp.MAX)
                stop = bool(flag.item() > 0)
            if stop:
                break
            factor = limits.lr_factor(state.step, state.elapsed_s)
            for g, lr in zip(optimizer.param_groups, base_lrs):
                g["lr"] = lr * factor
            batch = batch_for_step(state.step)
            batch["step"] = state.step
            losses = loss_module(batch)
            optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
            torch.nn.utils.clip_grad_norm_(model_for_state.parameters(), 10.0)
            optimizer.step()
            if ema is not None:
                ema.update_parameters(model_for_state)
            if after_step is not None:
                losses.update(after_step(state.step))
            state.step += 1
            for k, v in losses.items():
                running[k] = running.get(k, 0.0) + float(v.detach())
            bar.update(1)
            if state.step % limits.log_every == 0:
                row = {k: v / limits.log_every for k, v in running.items()}
                row.update(step=state.step, minutes=round((time.monotonic() - start) / 60, 3), lr_factor=round(factor, 4))
                state.history.append(row)
                running = {}
                if log:
                    log.write(json.dumps(row) + "\n")
                    log.flush()
                bar.set_postfix({k: f"{v:.3f}" for k, v in row.items() if k not in ("step", "minutes", "lr_factor")}, refresh=False)
            if time.monotonic() - last_ckpt >= limits.checkpoint_minutes * 60:
                state.elapsed_s = time.monotonic() - start
                checkpoint()
                last_ckpt = time.monotonic()
    finally:
        bar.close()
        state.elapsed_s = time.monotonic() - start
        checkpoint()
        if log:
            log.close()
    return state
