"""The one shape of the backend's errors: a stable ``code`` for APIs plus a human sentence; the job's error
(:class:`PipelineError`) and the one wrapper that turns a stage's coded error into it."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator


class CodedError(Exception):
    """Mixin base: ``raise SomeError("stable_snake_code", "what went wrong and what to do")``.

    Concrete errors combine it with a built-in class (``class IntakeError(CodedError, ValueError)``) so
    callers that catch ``ValueError`` or ``RuntimeError`` keep working; ``str(err)`` is the message.
    """

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


class PipelineError(CodedError, RuntimeError):
    """A job that cannot finish. ``code`` is stable (intake, weights, mesh, device codes pass through)."""


class JobCancelled(PipelineError):
    """The job was cancelled between stages."""

    def __init__(self, message: str = "the job was cancelled"):
        super().__init__("cancelled", message)


@contextmanager
def as_pipeline_error() -> Iterator[None]:
    """The one place where a stage's own coded error (``IntakeError``, ``MeshError``, ``OutputError``, ...)
    becomes a :class:`PipelineError` with the same code and message; a ``PipelineError`` passes as is.

    Raises:
        PipelineError: for any :class:`CodedError` raised inside the block.
    """
    try:
        yield
    except PipelineError:
        raise
    except CodedError as e:
        raise PipelineError(e.code, str(e)) from None
