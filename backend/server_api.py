"""The job server's wire contract in one place: API version, request limits, input kinds and the coded
HTTP error (docs/contracts.md section 5; the server is split over backend/server*.py, see server.py)."""
from __future__ import annotations

API_VERSION = 1
#: Largest accepted request body (a 4096^2 PNG sketch in base64 fits comfortably).
MAX_BODY_BYTES = 32 * 1024 * 1024
#: Seconds a connection may sit idle while a request or its body is read (slow or stalled clients).
REQUEST_TIMEOUT_S = 30.0
INPUT_KINDS = ("sketch_png", "strokes", "mask_png")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


class ApiError(Exception):
    """An HTTP error with a stable code: rendered as ``{"error": {"code", "message"}}``."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
