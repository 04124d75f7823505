"""HTTP client for the backend's job API (docs/contracts.md section 5), standard library only (urllib).

Every call has a time-out. Every failure is raised as :class:`BackendError` with a stable ``code`` and
a sentence an artist can act on: HTTP errors carry the backend's own ``{"error": {"code", "message"}}``;
connection failures become ``backend_unreachable``, time-outs ``backend_timeout``.
"""
from __future__ import annotations

import json
import socket
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

API_PREFIX = "/v1"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


class BackendError(RuntimeError):
    """A failed backend call. ``code``: stable snake_case id; ``status``: HTTP status or None."""

    def __init__(self, code: str, message: str, status: int | None = None):
        super().__init__(message)
        self.code = code
        self.status = status

    @property
    def message(self) -> str:
        """The human-readable message (what went wrong and what to do)."""
        return str(self)


class BackendClient:
    """Talks to one running backend.

    Args:
        base_url: e.g. ``http://127.0.0.1:53211`` (no trailing ``/v1``).
        token: the per-launch bearer token.
        timeout_s: time-out of every single HTTP call, seconds.
    """

    def __init__(self, base_url: str, token: str, timeout_s: float = 30.0):
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout_s = float(timeout_s)
        host = urllib.parse.urlsplit(self.base_url).hostname or ""
        # the local backend must never be reached through an HTTP(S)_PROXY set in the environment
        handlers = [urllib.request.ProxyHandler({})] if host in LOOPBACK_HOSTS else []
        self._opener = urllib.request.build_opener(*handlers)

    # -- plumbing -------------------------------------------------------------------------------------------
    def _request(self, method: str, path: str, body: Any = None, timeout_s: float | None = None) -> bytes:
        url = self.base_url + API_PREFIX + path
        data = None
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        timeout = self.timeout_s if timeout_s is None else timeout_s
        try:
            with self._opener.open(req, timeout=timeout) as resp:
                return resp.read()
        except urllib.error.HTTPError as e:
            raw = e.read()
            code, message = f"http_{e.code}", f"the backend answered HTTP {e.code} to {method} {path}"
            try:
                err = json.loads(raw.decode("utf-8")).get("error") or {}
                code = str(err.get("code") or code)
                message = str(err.get("message") or message)
            except (ValueError, AttributeError, UnicodeDecodeError):
                pass
            raise BackendError(code, message, e.code) from None
        except (socket.timeout, TimeoutError):
            raise BackendError("backend_timeout", f"the backend did not answer {method} {path} within {timeout:.0f} s") from None
        except urllib.error.URLError as e:
            reason = getattr(e, "reason", e)
            if isinstance(reason, (socket.timeout, TimeoutError)):
                raise BackendError("backend_timeout", f"the backend did not answer {method} {path} within {timeout:.0f} s") from None
            raise BackendError("backend_unreachable", f"cannot reach the backend at {self.base_url} ({reason}); "
                               "it may have crashed: press Generate again to restart it") from None
        except (ConnectionError, OSError) as e:
            raise BackendError("backend_unreachable", f"lost the connection to the backend at {self.base_url} ({e}); "
                               "it may have crashed: press Generate again to restart it") from None

    def _json(self, method: str, path: str, body: Any = None, timeout_s: float | None = None) -> dict:
        raw = self._request(method, path, body, timeout_s)
        try:
            out = json.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            raise BackendError("backend_bad_reply", f"the backend sent a reply to {method} {path} that is not JSON") from None
        if not isinstance(out, dict):
            raise BackendError("backend_bad_reply", f"the backend sent a reply to {method} {path} that is not a JSON object")
        return out

    # -- API --------------------------------------------------------------------------------------------------
    def health(self, timeout_s: float | None = None) -> dict:
        """``GET /v1/health`` -> ``{"status", "api", "device", "device_reason", "weights", "versions"}``."""
        return self._json("GET", "/health", timeout_s=timeout_s)

    def submit(self, job_input: dict, options: dict) -> str:
        """``POST /v1/jobs`` -> job id. ``job_input``: ``{"kind", "data", "name"}``; ``options`` per contract."""
        reply = self._json("POST", "/jobs", {"input": job_input, "options": options})
        job_id = reply.get("job_id")
        if not isinstance(job_id, str) or not job_id:
            raise BackendError("backend_bad_reply", "the backend accepted the job but sent no job_id")
        return job_id

    def status(self, job_id: str) -> dict:
        """``GET /v1/jobs/<id>`` -> status object (state, stage, progress, error, files, result)."""
        return self._json("GET", f"/jobs/{urllib.parse.quote(job_id, safe='')}")

    def cancel(self, job_id: str) -> dict:
        """``POST /v1/jobs/<id>/cancel`` -> status object."""
        return self._json("POST", f"/jobs/{urllib.parse.quote(job_id, safe='')}/cancel", {})

    def file(self, job_id: str, relative_path: str, timeout_s: float | None = None) -> bytes:
        """``GET /v1/jobs/<id>/files/<relative path>`` -> the file's bytes."""
        quoted = "/".join(urllib.parse.quote(part, safe="") for part in relative_path.split("/"))
        return self._request("GET", f"/jobs/{urllib.parse.quote(job_id, safe='')}/files/{quoted}", timeout_s=timeout_s)
