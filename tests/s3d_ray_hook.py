"""Test-only Ray worker setup (``runtime_env={"worker_process_setup_hook": "s3d_ray_hook.setup"}``).

Monkeypatching in the test process does not reach Ray's worker processes, so each worker runs
:func:`setup` at start: the tiny untrained field gets ``sphere_query``'s ellipsoid (as in
tests/test_pipeline.py), every finished ``generate`` appends the input's name to a log (to count
conversions), and a config file (``$S3D_TEST_RAY_HOOK``, read at each job) may name one input on which
the worker kills itself with SIGKILL mid-job (``kill_on``) or right after committing the result
(``kill_after``), once (a marker file records that it happened).
"""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path

CONFIG_ENV = "S3D_TEST_RAY_HOOK"
_current: dict = {"name": None}


def _config() -> dict:
    try:
        return json.loads(Path(os.environ[CONFIG_ENV]).read_text())
    except (KeyError, OSError, ValueError):
        return {}


def setup() -> None:
    import backend.pipeline as pipeline
    from backend.models.mask2triplane import Mask2Triplane
    from s3d_tiny_weights import sphere_query

    sphere = sphere_query(Mask2Triplane.query)

    def query(self, planes, xyz):
        cfg = _config()
        if cfg.get("kill_on") and _current["name"] == cfg["kill_on"]:
            try:  # first time only: the retry must succeed
                os.close(os.open(cfg["marker"], os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                pass
            else:
                os.kill(os.getpid(), signal.SIGKILL)  # mid-job: the temporary output folder exists
        return sphere(self, planes, xyz)

    Mask2Triplane.query = query
    original = pipeline.generate

    def generate(source, out_dir, *args, **kwargs):
        _current["name"] = Path(str(source)).name
        try:
            result = original(source, out_dir, *args, **kwargs)
        finally:
            _current["name"] = None
        cfg = _config()
        if cfg.get("log"):
            with open(cfg["log"], "a") as f:
                f.write(f"{Path(str(source)).name} {os.getpid()}\n")
        if cfg.get("kill_after") == Path(str(source)).name:  # committed, then dies before answering
            try:
                os.close(os.open(cfg["marker"], os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                pass
            else:
                os.kill(os.getpid(), signal.SIGKILL)
        return result

    pipeline.generate = generate
