"""Which torch device a job runs on, and why. CUDA when present, CPU otherwise; never a silent swap."""
from __future__ import annotations

from dataclasses import dataclass


class DeviceError(RuntimeError):
    """The requested device cannot be used (e.g. CUDA asked for on a machine without it)."""

    code = "device_unavailable"


@dataclass(frozen=True)
class DeviceChoice:
    """The device to use (``"cpu"`` or ``"cuda"``) and a sentence saying why."""

    device: str
    reason: str


def choose_device(requested: str = "auto") -> DeviceChoice:
    """Pick the torch device for ``requested`` in ``{"auto", "cpu", "cuda"}``.

    ``auto`` takes CUDA when ``torch.cuda.is_available()`` and says so, CPU otherwise.

    Raises:
        DeviceError: ``cuda`` requested but no usable CUDA device (the message says how to proceed).
        ValueError: an unknown device name.
    """
    import torch

    if requested not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, not {requested!r}")
    has_cuda = torch.cuda.is_available()
    if requested == "cpu":
        return DeviceChoice("cpu", "CPU requested")
    if requested == "cuda":
        if not has_cuda:
            raise DeviceError(
                "CUDA was requested but torch sees no CUDA device "
                f"(torch {torch.__version__}, built with CUDA {torch.version.cuda}); use --device cpu or auto"
            )
        return DeviceChoice("cuda", f"CUDA requested: {torch.cuda.get_device_name(0)}")
    if has_cuda:
        return DeviceChoice("cuda", f"auto: CUDA available ({torch.cuda.get_device_name(0)})")
    why = "this torch build has no CUDA support" if torch.version.cuda is None else "no CUDA device is visible"
    return DeviceChoice("cpu", f"auto: CPU because {why}")
