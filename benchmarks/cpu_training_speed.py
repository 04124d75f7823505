"""Training-step time of the sketch network on this CPU: float32 against bfloat16 autocast, channels-last
against the default layout, at the lite width and wider.

Prints one line per setting with the median step time (forward + backward + Adam) over the timed steps,
and the ratio to float32 channels-last of the same width, measured in one run with the settings
interleaved, so that a busy machine slows every setting alike. bfloat16 autocast pays only where the
processor has bfloat16 instructions (AVX-512 BF16 or AMX); the line ``cpu flags`` says which are there.

    python benchmarks/cpu_training_speed.py [--batch 12] [--steps 6] [--threads 2] [--widths 1,1.5]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from backend.models.config import get_config
from backend.models.sketch2mask import SketchToMask
from training.losses import sketch_to_mask_loss


def cpu_flags() -> str:
    """The bfloat16-related flags of /proc/cpuinfo (empty where unknown)."""
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        return ""
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return " ".join(sorted(f for f in flags if "bf16" in f or f.startswith("amx")))


def make_step(width: float, channels_last: bool, bf16: bool, batch: int):
    """A closure running one training step of a SketchToMask of ``width`` x the lite channels."""
    cfg = get_config("lite", "sketch2mask")
    cfg["channels"] = [int(round(c * width)) for c in cfg["channels"]]
    net = SketchToMask(cfg)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    net = net.to(memory_format=fmt)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    r = cfg["internal_resolution"]
    g = torch.Generator().manual_seed(0)
    sketch = torch.rand(batch, 1, r, r, generator=g).contiguous(memory_format=fmt)
    mask = torch.randint(0, 19, (batch, r, r), generator=g)
    target_ws = torch.randn(batch, cfg["num_ws_geometry"], cfg["w_dim"], generator=g)

    def step() -> float:
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits, style = net(sketch)
        loss = sketch_to_mask_loss(logits.float(), style.float(), mask, target_ws)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return time.perf_counter() - t0

    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=12)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--widths", default="1,1.5")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, batch {args.batch}; cpu flags: {cpu_flags() or 'none'}")
    settings = [(float(w), cl, bf) for w in args.widths.split(",") for cl in (True, False) for bf in (False, True)]
    steps = {s: make_step(s[0], s[1], s[2], args.batch) for s in settings}
    for fn in steps.values():  # warm-up (one-time kernel selection)
        fn()
    times: dict[tuple, list[float]] = {s: [] for s in settings}
    for _ in range(args.steps):
        for s, fn in steps.items():
            times[s].append(fn())
    for s in settings:
        med = statistics.median(times[s])
        base = statistics.median(times[(s[0], True, False)])
        print(f"width x{s[0]:<4} {'channels-last' if s[1] else 'contiguous   '} {'bf16' if s[2] else 'fp32'}: "
              f"{med * 1000:7.1f} ms/step  ({base / med:4.2f}x the fp32 channels-last speed)")


if __name__ == "__main__":
    main()
