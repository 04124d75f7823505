"""The one shape of the backend's errors: a stable ``code`` for APIs plus a human sentence."""
from __future__ import annotations


class CodedError(Exception):
    """Mixin base: ``raise SomeError("stable_snake_code", "what went wrong and what to do")``.

    Concrete errors combine it with a built-in class (``class IntakeError(CodedError, ValueError)``) so
    callers that catch ``ValueError`` or ``RuntimeError`` keep working; ``str(err)`` is the message.
    """

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
