"""Attaching ``s3d batch --engine ray`` to Ray: import it (optional, ``pip install -e '.[cluster]'``), join a
cluster or start an embedded local Ray, and shut down what was started here (backend/batch_ray.py runs
the batch; docs/scale-out.md)."""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass

from backend.errors import CodedError

INSTALL_HINT = "pip install -e '.[cluster]'"


class BatchError(CodedError, RuntimeError):
    """The Ray batch cannot start: ``ray_not_installed``, ``ray_unreachable``, ``bad_option``."""


def import_ray():
    """Import Ray.

    Raises:
        BatchError: ``ray_not_installed`` with the install command.
    """
    try:
        import ray
    except ImportError:
        raise BatchError("ray_not_installed", f"--engine ray needs Ray, which is not installed here; install the "
                         f"cluster extra ({INSTALL_HINT}) or use the default --engine local") from None
    return ray


@dataclass
class RaySession:
    """How this process is attached to Ray: ``started`` (ours to shut down), the embedded Ray's temp
    folder (removed on stop), and the address (``"embedded"``, a cluster address, or ``"existing"``)."""

    started: bool
    temp_dir: str | None
    address: str


def start_ray(address: str | None = None, num_cpus: int = 2, runtime_env: dict | None = None) -> RaySession:
    """Attach to Ray: reuse one already initialised in this process, join ``address`` (or
    ``$RAY_ADDRESS``; ``"auto"`` = the cluster started on this machine by ``ray start``), else start an
    embedded local Ray with ``num_cpus`` CPUs, no dashboard, its logs and sockets in a new temp folder.

    Raises:
        BatchError: ``ray_not_installed``; ``ray_unreachable`` (no cluster at that address).
    """
    ray = import_ray()
    if ray.is_initialized():
        return RaySession(False, None, "existing")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage report from a batch job
    quiet = dict(log_to_driver=False, logging_level="ERROR", runtime_env=runtime_env)
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        try:
            ray.init(address=address, **quiet)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise BatchError("ray_unreachable", f"cannot join the Ray cluster at {address!r} ({e}); start one "
                             "with `ray start --head` or leave out --address for a local Ray") from None
        return RaySession(True, None, address)
    # short: Ray's unix socket paths (at most 107 bytes) live under it, and $TMPDIR can be long (macOS)
    tmp = tempfile.mkdtemp(prefix="s3d-ray-", dir="/tmp" if os.access("/tmp", os.W_OK) else None)
    env_address = os.environ.pop("RAY_ADDRESS", None)
    try:
        ray.init(num_cpus=num_cpus, include_dashboard=False, _temp_dir=tmp, **quiet)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if env_address is not None:
            os.environ["RAY_ADDRESS"] = env_address
    return RaySession(True, tmp, "embedded")


def stop_ray(session: RaySession) -> None:
    """Shut Ray down if :func:`start_ray` started or joined it, and remove the embedded Ray's temp folder."""
    if not session.started:
        return
    import ray

    ray.shutdown()
    if session.temp_dir:
        shutil.rmtree(session.temp_dir, ignore_errors=True)
