"""The local job server over real HTTP on loopback: auth, job lifecycle, cancel, errors, queue limit,
and the ``s3d serve`` process itself (ready line, token file)."""
from __future__ import annotations

import base64
import http.client
import io
import json
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import backend.mesh
from backend.export import read_ply
from backend.models.mask2triplane import Mask2Triplane
from backend.pipeline import load_models
from backend.server import JobServer, make_server
from s3d_tiny_weights import make_tiny_weights, sphere_query

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "test-token-0123456789"
FAST = {"resolution": 64, "views": 4, "view_resolution": 64, "color_resolution": 64}
STROKES = {"version": 1, "frame": "normalized", "strokes": [
    {"points": [[0.5 + 0.25 * np.cos(a), 0.55 + 0.33 * np.sin(a)] for a in np.linspace(0, 6.3, 40)], "width": 0.006},
    {"points": [[0.4, 0.45], [0.46, 0.45]], "width": 0.006}, {"points": [[0.54, 0.45], [0.6, 0.45]], "width": 0.006},
    {"points": [[0.45, 0.7], [0.55, 0.7]], "width": 0.006}]}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    torch.set_num_threads(2)
    wdir = make_tiny_weights(tmp_path_factory.mktemp("weights"))
    mp = pytest.MonkeyPatch()
    mp.setattr(Mask2Triplane, "query", sphere_query(Mask2Triplane.query))
    app = JobServer(load_models(wdir, "cpu"), TOKEN, tmp_path_factory.mktemp("jobs"), max_queue=2,
                    weights_status={"mask2triplane_lite": {"sha256": "x", "ok": True}})
    httpd = make_server(app, "127.0.0.1", 0)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield app, httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()
    app.shutdown()
    mp.undo()


def call(port, method, path, body=None, token=TOKEN, raw=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    h = dict(headers or {})
    if token is not None:
        h["Authorization"] = f"Bearer {token}"
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    if data is not None:
        h.setdefault("Content-Type", "application/json")
    conn.request(method, path, body=data, headers=h)
    resp = conn.getresponse()
    payload = resp.read()
    conn.close()
    ctype = resp.getheader("Content-Type", "")
    return resp.status, (json.loads(payload) if ctype.startswith("application/json") else payload)


def wait(port, job_id, states=("done", "failed", "cancelled"), timeout=120):
    seen = []
    t0 = time.time()
    while time.time() - t0 < timeout:
        code, st = call(port, "GET", f"/v1/jobs/{job_id}")
        assert code == 200
        seen.append(st)
        if st["state"] in states:
            return st, seen
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still {seen[-1]['state']} after {timeout} s")


def sketch_job(**opts):
    return {"input": {"kind": "strokes", "data": STROKES, "name": "test"}, "options": dict(FAST, **opts)}


class Gate:
    """Replaces backend.mesh.density_grid so a running job waits until released (or fails on demand)."""

    def __init__(self, monkeypatch, fail=None):
        self.entered, self.release, self.fail = threading.Event(), threading.Event(), fail
        original = backend.mesh.density_grid

        def gated(*a, **kw):
            self.entered.set()
            assert self.release.wait(60)
            if self.fail:
                raise backend.mesh.MeshError(self.fail, "forced by the test")
            return original(*a, **kw)

        monkeypatch.setattr(backend.mesh, "density_grid", gated)


def test_every_route_needs_the_token(server):
    _, port = server
    for method, path in [("GET", "/v1/health"), ("POST", "/v1/jobs"), ("GET", "/v1/jobs/abc"),
                         ("POST", "/v1/jobs/abc/cancel"), ("GET", "/v1/jobs/abc/files/mesh.ply")]:
        for token in (None, "wrong", TOKEN + "x", ""):
            code, body = call(port, method, path, body={} if method == "POST" else None, token=token)
            assert code == 401 and body["error"]["code"] == "unauthorized", (method, path, token)
    code, health = call(port, "GET", "/v1/health")
    assert code == 200 and health["status"] == "ok" and health["api"] == 1
    assert health["device"] == "cpu" and health["device_reason"]
    assert health["weights"]["mask2triplane_lite"]["ok"] is True
    assert "torch" in health["versions"] and "strokes" in health["capabilities"]["input_kinds"]


def test_job_lifecycle_progress_result_and_files(server):
    _, port = server
    code, body = call(port, "POST", "/v1/jobs", sketch_job(seed=2, formats=["ply", "glb"]))
    assert code == 202 and body["job_id"]
    job_id = body["job_id"]
    final, seen = wait(port, job_id)
    assert final["state"] == "done", final["error"]
    progress = [s["progress"] for s in seen]
    assert progress == sorted(progress) and all(0.0 <= p <= 1.0 for p in progress) and progress[-1] == 1.0
    assert final["result"]["seed"] == 2 and final["error"] is None
    assert {"mesh.ply", "mesh.glb", "mask.png", "mask_color.png", "result.json"} <= set(final["files"])
    assert sum(f.startswith("views/") for f in final["files"]) == 4
    code, ply = call(port, "GET", f"/v1/jobs/{job_id}/files/mesh.ply")
    assert code == 200
    mesh = read_ply(ply)
    assert len(mesh["vertices"]) == final["result"]["vertex_count"]
    code, png = call(port, "GET", f"/v1/jobs/{job_id}/files/views/front.png")
    assert code == 200 and Image.open(io.BytesIO(png)).size == (64, 64)
    code, res = call(port, "GET", f"/v1/jobs/{job_id}/files/result.json")
    assert code == 200 and res["face_count"] == final["result"]["face_count"]
    # files that are not the job's
    for rel in ["nothing.ply", "../result.json", "views/../../x"]:
        code, err = call(port, "GET", f"/v1/jobs/{job_id}/files/{rel}")
        assert code == 404 and err["error"]["code"] == "file_not_found"


def test_png_sketch_and_mask_inputs(server):
    _, port = server
    img = np.full((300, 300), 255, np.uint8)
    img[60:240, 100:103] = 0
    img[60:63, 100:200] = 0
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "PNG")
    code, body = call(port, "POST", "/v1/jobs", {"input": {"kind": "sketch_png",
                                                           "data": base64.b64encode(buf.getvalue()).decode()},
                                                 "options": FAST})
    assert code == 202
    ids = np.zeros((128, 128), np.uint8)
    ids[20:110, 30:100] = 1
    buf = io.BytesIO()
    Image.fromarray(ids).save(buf, "PNG")
    code2, body2 = call(port, "POST", "/v1/jobs", {"input": {"kind": "mask_png",
                                                             "data": base64.b64encode(buf.getvalue()).decode()},
                                                   "options": FAST})
    assert code2 == 202
    for jid in (body["job_id"], body2["job_id"]):
        st, _ = wait(port, jid)
        assert st["state"] == "done", st["error"]
    code, mask = call(port, "GET", f"/v1/jobs/{body2['job_id']}/files/mask.png")
    assert (np.asarray(Image.open(io.BytesIO(mask))) == ids).all()  # the user's mask, in its own frame


def test_unknown_job_bad_requests_and_errors_are_json(server):
    _, port = server
    code, err = call(port, "GET", "/v1/jobs/doesnotexist")
    assert code == 404 and err["error"]["code"] == "job_not_found" and err["error"]["message"]
    code, err = call(port, "POST", "/v1/jobs/doesnotexist/cancel")
    assert code == 404 and err["error"]["code"] == "job_not_found"
    code, err = call(port, "GET", "/v2/health")
    assert code == 404 and err["error"]["code"] == "not_found"
    code, err = call(port, "DELETE", "/v1/health")
    assert code == 405 and err["error"]["code"] == "method_not_allowed"
    cases = [
        (b"{not json", "bad_json"),
        (json.dumps({"input": {"kind": "video", "data": ""}}).encode(), "bad_input"),
        (json.dumps({"input": {"kind": "sketch_png", "data": "%%%"}}).encode(), "bad_input"),
        (json.dumps({"input": {"kind": "sketch_png", "data": base64.b64encode(b"junk").decode()}}).encode(),
         "image_unreadable"),
        (json.dumps(sketch_job(resolution=100)).encode(), "bad_option"),
        (json.dumps(sketch_job(colour="red")).encode(), "bad_option"),
        (json.dumps({"input": {"kind": "strokes", "data": {"strokes": [{"points": "x"}]}}}).encode(),
         "stroke_bad_points"),
    ]
    for raw, expected in cases:
        code, err = call(port, "POST", "/v1/jobs", raw=raw)
        assert code == 400 and err["error"]["code"] == expected, (raw[:60], err)
    code, err = call(port, "POST", "/v1/jobs", raw=b"{}", headers={"Content-Length": str(10 ** 9)})
    assert code == 413 and err["error"]["code"] == "body_too_large"


def test_cancel_queued_and_running_jobs(server, monkeypatch):
    _, port = server
    gate = Gate(monkeypatch)
    _, running = call(port, "POST", "/v1/jobs", sketch_job())
    _, queued = call(port, "POST", "/v1/jobs", sketch_job())
    assert gate.entered.wait(60)
    code, st = call(port, "GET", f"/v1/jobs/{running['job_id']}")
    assert st["state"] == "running" and st["stage"] == "density_grid" and 0 < st["progress"] < 1
    code, st = call(port, "POST", f"/v1/jobs/{queued['job_id']}/cancel")
    assert code == 200 and st["state"] == "cancelled"
    code, st = call(port, "POST", f"/v1/jobs/{running['job_id']}/cancel")
    assert code == 200 and st["state"] == "running"  # stops at the next stage boundary
    gate.release.set()
    st, _ = wait(port, running["job_id"])
    assert st["state"] == "cancelled" and st["error"]["code"] == "cancelled" and st["files"] == []
    code, err = call(port, "GET", f"/v1/jobs/{running['job_id']}/files/mesh.ply")
    assert code == 404


def test_full_queue_answers_429_and_a_failing_job_leaves_the_server_serving(server, monkeypatch):
    app, port = server
    gate = Gate(monkeypatch, fail="empty_surface")
    _, first = call(port, "POST", "/v1/jobs", sketch_job())
    assert gate.entered.wait(60)  # first is running; the queue (max 2) takes two more
    assert call(port, "POST", "/v1/jobs", sketch_job())[0] == 202
    assert call(port, "POST", "/v1/jobs", sketch_job())[0] == 202
    code, err = call(port, "POST", "/v1/jobs", sketch_job())
    assert code == 429 and err["error"]["code"] == "queue_full"
    gate.release.set()
    st, _ = wait(port, first["job_id"])
    assert st["state"] == "failed" and st["error"]["code"] == "empty_surface"
    monkeypatch.undo()  # the real density grid again: the server still works
    while app.queue.qsize():
        time.sleep(0.05)
    code, body = call(port, "POST", "/v1/jobs", sketch_job())
    assert code == 202
    st, _ = wait(port, body["job_id"])
    assert st["state"] == "done"
    assert call(port, "GET", "/v1/health")[0] == 200


def test_s3d_serve_process_prints_ready_and_guards_the_token(tmp_path):
    wdir = make_tiny_weights(tmp_path / "w", empty=True)
    token_file = tmp_path / "tok" / "token"
    env = dict(os.environ, S3D_WEIGHTS_DIR=str(wdir))
    proc = subprocess.Popen([sys.executable, "-m", "backend.cli", "serve", "--port", "0", "--token-file",
                             str(token_file), "--threads", "1"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("S3D_READY "), (line, proc.stderr.read() if proc.poll() is not None else "")
        ready = json.loads(line[len("S3D_READY "):])
        assert ready["host"] == "127.0.0.1" and ready["port"] > 0 and ready["token_file"] == str(token_file)
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        token = token_file.read_text().strip()
        assert len(token) >= 32
        assert call(ready["port"], "GET", "/v1/health", token="nope")[0] == 401
        code, health = call(ready["port"], "GET", "/v1/health", token=token)
        assert code == 200 and health["weights"]["mask2triplane_lite"]["ok"] is True
        # an untrained field has no surface: the job fails with a clear code and the server goes on
        code, body = call(ready["port"], "POST", "/v1/jobs", sketch_job(), token=token)
        assert code == 202
        t0 = time.time()
        while True:
            st = call(ready["port"], "GET", f"/v1/jobs/{body['job_id']}", token=token)[1]
            if st["state"] in ("done", "failed") or time.time() - t0 > 120:
                break
            time.sleep(0.1)
        assert st["state"] == "failed" and st["error"]["code"] == "empty_surface", st
        assert call(ready["port"], "GET", "/v1/health", token=token)[0] == 200
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_serve_refuses_remote_hosts_without_opt_in():
    r = subprocess.run([sys.executable, "-m", "backend.cli", "serve", "--host", "0.0.0.0"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "allow-remote" in r.stderr


def test_old_finished_jobs_are_forgotten_with_their_files(server, monkeypatch):
    import backend.server_jobs as srv_jobs

    app, port = server
    monkeypatch.setattr(srv_jobs, "MAX_FINISHED_JOBS", 1)  # the job table's own setting
    ids = []
    for _ in range(2):
        code, body = call(port, "POST", "/v1/jobs", sketch_job())
        assert code == 202
        ids.append(body["job_id"])
        assert wait(port, body["job_id"])[0]["state"] == "done"
    first_dir = app.jobs_dir / ids[0]
    assert first_dir.is_dir()
    code, body = call(port, "POST", "/v1/jobs", sketch_job())  # creating a job prunes the finished ones
    assert code == 202
    assert call(port, "GET", f"/v1/jobs/{ids[0]}")[1]["error"]["code"] == "job_not_found"
    assert not first_dir.exists()
    assert call(port, "GET", f"/v1/jobs/{ids[1]}")[0] == 200
    wait(port, body["job_id"])


def test_serve_exits_when_its_parent_is_killed(tmp_path):
    """A Blender killed hard must not leave an orphaned backend (--exit-with-parent)."""
    wdir = make_tiny_weights(tmp_path / "w", empty=True)
    pid_file = tmp_path / "server.pid"
    # the parent: starts the server, writes its pid once ready, then sleeps until killed
    parent_code = (
        "import subprocess, sys, time\n"
        f"p = subprocess.Popen([sys.executable, '-m', 'backend.cli', 'serve', '--port', '0', '--threads', '1', "
        f"'--exit-with-parent'], stdout=subprocess.PIPE, text=True)\n"
        "assert p.stdout.readline().startswith('S3D_READY ')\n"
        f"open({str(pid_file)!r}, 'w').write(str(p.pid))\n"
        "time.sleep(600)\n")
    env = dict(os.environ, S3D_WEIGHTS_DIR=str(wdir))
    parent = subprocess.Popen([sys.executable, "-c", parent_code], cwd=ROOT, env=env)
    try:
        t0 = time.time()
        while not pid_file.exists() and time.time() - t0 < 120 and parent.poll() is None:
            time.sleep(0.1)
        assert pid_file.exists(), "the server never became ready"
        server_pid = int(pid_file.read_text())
        os.kill(server_pid, 0)  # alive while its parent lives
        parent.kill()
        parent.wait(timeout=20)
        t0 = time.time()
        while time.time() - t0 < 30:
            try:
                os.kill(server_pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
        else:
            os.kill(server_pid, 9)
            pytest.fail("the server outlived its killed parent by 30 s")
    finally:
        if parent.poll() is None:
            parent.kill()


def _serve(args, env=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "backend.cli", "serve", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env=dict(os.environ, **(env or {})))


def test_serve_start_up_errors_are_one_coded_sentence(tmp_path):
    """An uncreatable --jobs-dir and a busy --port: exit 2, one ``error [code]`` line, no traceback, and no
    token file written."""
    import socket

    wdir = make_tiny_weights(tmp_path / "w", empty=True)
    (tmp_path / "a_file").write_text("x")
    token = tmp_path / "tok" / "token"
    r = _serve(["--jobs-dir", str(tmp_path / "a_file" / "jobs"), "--token-file", str(token)])
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1 and "error [jobs_dir_not_writable]" in lines[0], r.stderr
    assert not token.exists() and not token.parent.exists()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        r = _serve(["--port", str(busy.getsockname()[1]), "--token-file", str(token), "--jobs-dir",
                    str(tmp_path / "jobs")], env={"S3D_WEIGHTS_DIR": str(wdir)})
    assert r.returncode == 2 and "error [port_in_use]" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert [ln for ln in r.stderr.splitlines() if "error [" in ln][0].count("port") >= 1
    assert not token.exists()


def test_serve_clean_exit_removes_its_temp_jobs_folder_and_token_file(tmp_path):
    wdir = make_tiny_weights(tmp_path / "w", empty=True)
    proc = subprocess.Popen([sys.executable, "-m", "backend.cli", "serve", "--port", "0", "--threads", "1"], cwd=ROOT,
                            env=dict(os.environ, S3D_WEIGHTS_DIR=str(wdir)), stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        ready = json.loads(proc.stdout.readline()[len("S3D_READY "):])
        token_file, jobs = Path(ready["token_file"]), Path(ready["jobs_dir"])
        assert token_file.is_file() and jobs.is_dir()
        (jobs / "leftover").mkdir()
    finally:
        proc.terminate()  # SIGTERM: the clean exit
        assert proc.wait(timeout=30) == 0
    assert not jobs.exists() and not token_file.exists() and not token_file.parent.exists()
