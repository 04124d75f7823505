"""A job server for the kill -9 test (tests/test_hardening.py): tiny weights with a sphere field, and one
stage that blocks for ever from its second job on, so a test can kill the process there.

Usage: python tests/crash_server_helper.py WEIGHTS_DIR JOBS_DIR STAGE
STAGE is a pipeline stage name (backend.pipeline.Stage: the job blocks as the stage starts) or ``export``
(the job blocks in the middle of its export: the mesh files written, the views not yet).
Prints ``READY <port>``, then ``BLOCKED`` when the second job reaches the stage.
"""
from __future__ import annotations

import sys
import threading
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import backend.export  # noqa: E402
import backend.pipeline  # noqa: E402
from backend.models.mask2triplane import Mask2Triplane  # noqa: E402
from backend.pipeline import load_models  # noqa: E402
from backend.server import JobServer, make_server  # noqa: E402
from s3d_tiny_weights import sphere_query  # noqa: E402

TOKEN = "crash-token-0123456789"


def _block() -> None:
    print("BLOCKED", flush=True)
    threading.Event().wait()


def block_from_second_call(module, name: str) -> None:
    original, calls = getattr(module, name), [0]

    def blocking(*a, **kw):
        calls[0] += 1
        if calls[0] >= 2:
            _block()
        return original(*a, **kw)

    setattr(module, name, blocking)


def block_stage_from_second_entry(stage_name: str) -> None:
    """Block the job that enters ``stage_name`` for the second time, as the stage starts."""
    progress = backend.pipeline._Progress
    original, calls = progress.stage_of, [0]

    @contextmanager
    def stage_of(self, stage):
        if stage.value == stage_name:
            calls[0] += 1
            if calls[0] >= 2:
                _block()
        with original(self, stage):
            yield

    progress.stage_of = stage_of


def main() -> None:
    weights, jobs, stage = sys.argv[1:4]
    Mask2Triplane.query = sphere_query(Mask2Triplane.query)
    if stage == "export":  # after the mesh files are written, while the views are written
        block_from_second_call(backend.export, "write_view_files")
    else:
        block_stage_from_second_entry(backend.pipeline.Stage(stage).value)
    app = JobServer(load_models(weights, "cpu"), TOKEN, jobs, max_queue=4)
    httpd = make_server(app, "127.0.0.1", 0)
    print(f"READY {httpd.server_address[1]}", flush=True)
    httpd.serve_forever(poll_interval=0.05)


if __name__ == "__main__":
    main()
