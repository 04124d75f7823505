"""The HTTP side of ``s3d serve``: routing of the ``/v1`` routes onto the job table, JSON bodies and
errors, the ``Host`` check, and the cap on open connections (docs/contracts.md section 5; the server is
split over backend/server*.py, see server.py)."""
from __future__ import annotations

import json
import mimetypes
import sys
import threading
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from backend.server_api import LOOPBACK_HOSTS, MAX_BODY_BYTES, REQUEST_TIMEOUT_S, ApiError
from backend.server_jobs import JobServer

#: Open connections served at once; more are answered 503 ``too_many_connections`` and closed.
MAX_CONNECTIONS = 64


class _Handler(BaseHTTPRequestHandler):
    server_version = "S3D/1"
    app: JobServer  # set on the class made by make_server
    quiet = True
    allow_any_host = False
    #: socket time-out for reading a request (StreamRequestHandler applies it to the connection)
    timeout = REQUEST_TIMEOUT_S

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        if not self.quiet:
            sys.stderr.write("s3d serve: " + format % args + "\n")

    def _send_json(self, status: int, obj: Any) -> None:
        data = json.dumps(obj).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The stdlib's own errors (malformed request line, unknown method, huge headers) as JSON too."""
        stable = {400: "bad_request", 408: "request_timeout", 414: "uri_too_long", 431: "headers_too_large",
                  501: "method_not_allowed", 505: "http_version_not_supported"}
        status = 405 if code == 501 else code
        body = json.dumps({"error": {"code": stable.get(code, f"http_{code}"),
                                     "message": message or self.responses.get(code, ("error",))[0]}}).encode("utf-8")
        try:
            self.send_response(status, message)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD" and status >= 200 and status not in (204, 304):
                self.wfile.write(body)
        except OSError:  # the client is gone
            pass
        self.close_connection = True

    def _send_error(self, e: ApiError) -> None:
        self._send_json(e.status, {"error": {"code": e.code, "message": e.message}})

    def _read_json(self) -> Any:
        length = self.headers.get("Content-Length")
        if length is None:
            raise ApiError(411, "length_required", "send the body with a Content-Length header")
        try:
            n = int(length)
        except ValueError:
            raise ApiError(400, "bad_request", "Content-Length is not a number") from None
        if n > MAX_BODY_BYTES:
            raise ApiError(413, "body_too_large", f"the body is {n} bytes; the limit is {MAX_BODY_BYTES}")
        if n < 0:
            raise ApiError(400, "bad_request", "Content-Length is negative")
        try:
            raw = self.rfile.read(n) if n > 0 else b""
        except TimeoutError:
            self.close_connection = True
            raise ApiError(408, "request_timeout", f"the body did not arrive within {self.timeout:.0f} s") from None
        if len(raw) < n:
            self.close_connection = True
            raise ApiError(400, "body_incomplete", f"the body ended after {len(raw)} of {n} bytes")
        try:
            return json.loads(raw.decode("utf-8")) if raw else {}
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
            raise ApiError(400, "bad_json", f"the body is not valid JSON: {type(e).__name__}: {e}"[:500]) from None

    def _host_allowed(self) -> bool:
        """The ``Host`` header must name the address the server is bound to (a DNS-rebinding guard: a web
        page that resolves its own name to 127.0.0.1 sends its own name). Any host with ``allow_remote``."""
        host = self.headers.get("Host")
        if host is None:
            return False
        if self.allow_any_host:
            return True
        bound, port = self.server.server_address[:2]
        names = {bound, "localhost", "127.0.0.1", "[::1]"} if bound in LOOPBACK_HOSTS else {bound}
        names |= {f"[{bound}]"} if ":" in bound else set()
        return host.strip().lower() in {f"{n}:{port}" for n in names}

    def _route(self, method: str) -> None:
        try:
            if not self._host_allowed():
                self.close_connection = True
                raise ApiError(421, "host_not_allowed", "the Host header must be the address the server is bound to "
                               f"({self.server.server_address[0]}:{self.server.server_address[1]})")
            if not self.app.authorized(self.headers.get("Authorization")):
                raise ApiError(401, "unauthorized", "missing or wrong token: send 'Authorization: Bearer <token>' "
                               "with the token from the server's token file")
            path = urlsplit(self.path).path
            parts = [unquote(p) for p in path.split("/") if p]
            if len(parts) < 2 or parts[0] != "v1":
                raise ApiError(404, "not_found", f"no route {path}; the API lives under /v1")
            if parts[1] == "health" and len(parts) == 2:
                self._only(method, "GET")
                return self._send_json(200, self.app.health())
            if parts[1] == "jobs":
                if len(parts) == 2:
                    self._only(method, "POST")
                    job = self.app.create(self._read_json())
                    return self._send_json(202, {"job_id": job.job_id})
                job_id = parts[2]
                if len(parts) == 3:
                    self._only(method, "GET")
                    return self._send_json(200, self.app.status(job_id))
                if len(parts) == 4 and parts[3] == "cancel":
                    self._only(method, "POST")
                    if self.headers.get("Content-Length"):
                        self._read_json()
                    return self._send_json(200, self.app.cancel(job_id))
                if len(parts) >= 5 and parts[3] == "files":
                    self._only(method, "GET")
                    return self._send_file(self.app.file_path(job_id, "/".join(parts[4:])))
            raise ApiError(404, "not_found", f"no route {method} {path}")
        except ApiError as e:
            self._send_error(e)
        except Exception as e:  # never let a handler bug drop the connection without an answer
            traceback.print_exc(file=sys.stderr)
            self._send_error(ApiError(500, "internal_error", f"{type(e).__name__}: {e}"))

    def _only(self, method: str, allowed: str) -> None:
        if method != allowed:
            raise ApiError(405, "method_not_allowed", f"use {allowed} on {urlsplit(self.path).path}")

    def _send_file(self, path: Path) -> None:
        data = path.read_bytes()
        ctype = {".ply": "application/octet-stream", ".glb": "model/gltf-binary", ".obj": "text/plain",
                 ".json": "application/json"}.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - stdlib names
        self._route("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._route("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._route("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._route("DELETE")


class _CappedServer(ThreadingHTTPServer):
    """``ThreadingHTTPServer`` with at most ``max_connections`` connections served at once; one more is
    answered 503 ``too_many_connections`` at once and closed (one thread per connection otherwise)."""

    daemon_threads = True
    max_connections = MAX_CONNECTIONS

    def server_bind(self) -> None:
        self.slots = threading.BoundedSemaphore(self.max_connections)
        super().server_bind()

    def process_request(self, request, client_address) -> None:
        if not self.slots.acquire(blocking=False):
            body = json.dumps({"error": {"code": "too_many_connections", "message": f"{self.max_connections} "
                                         "connections are open; close idle ones or retry"}}).encode()
            try:
                request.settimeout(1.0)
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                                b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


def make_server(app: JobServer, host: str = "127.0.0.1", port: int = 0, quiet: bool = True,
                allow_any_host: bool = False) -> ThreadingHTTPServer:
    """A threading HTTP server bound to ``(host, port)`` (0 = a free port) serving ``app``, with at most
    ``MAX_CONNECTIONS`` connections at once and the ``Host`` header checked (``allow_any_host`` for
    ``--allow-remote``).

    Raises:
        OSError: the address cannot be bound (``serve`` turns it into a coded :class:`StartupError`).
    """
    handler = type("S3DHandler", (_Handler,), {"app": app, "quiet": quiet, "allow_any_host": allow_any_host})
    return _CappedServer((host, port), handler)
