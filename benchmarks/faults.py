"""Fault injection for docs/reliability.md (issue 8): run each fault for real and record what the user sees.

Faults:

* ``kill``: the backend process killed (SIGKILL) mid-job, driven the way the Blender add-on drives it
  (``blender_addon.transport.backend_process`` + ``blender_addon.transport.job_runner``, no Blender needed): the job must
  fail with a clear ``backend_crashed`` error, the next job must restart the backend and complete, the
  first job's output folder must stay empty, the killed server's own jobs folder must hold no half-written
  job folder, and a server restarted on that folder must answer the job ``failed`` (``interrupted``) and
  remove its temporary folder;
* ``weights``: a weights file with flipped bytes -> ``s3d generate`` must name the file and the checksum
  its card expects;
* ``cuda``: ``s3d generate --device cuda`` on a machine without CUDA;
* ``resolution``: a grid resolution above the supported ones, and an out-of-memory at resolution 256
  (the process's address space capped with ``RLIMIT_AS``), which must say to use a lower resolution;
* ``load``: N concurrent clients each submitting jobs to one ``s3d serve`` with a small queue: every job
  must complete or be refused with 429 ``queue_full``; none lost, none stuck.

Usage (from the repository root, with the backend's Python)::

    .venv/bin/python benchmarks/faults.py --out /work/runs/faults.json            # all faults
    .venv/bin/python benchmarks/faults.py --only kill,load --clients 8 --jobs 4 --max-queue 4

Uses the bundled ``weights/`` (or ``--weights``); writes a JSON record and prints a markdown table.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
EXAMPLE = ROOT / "examples" / "head_front.json"


def _cli(args: list[str], env: dict | None = None, limit_as_bytes: int | None = None,
         timeout: float = 600) -> dict:
    """Run ``python -m backend.cli ARGS``; return rc, the last stderr lines and the wall time."""
    def limit() -> None:
        if limit_as_bytes:
            resource.setrlimit(resource.RLIMIT_AS, (limit_as_bytes, limit_as_bytes))

    t0 = time.time()
    r = subprocess.run([sys.executable, "-m", "backend.cli", *args], cwd=ROOT, capture_output=True, text=True,
                       timeout=timeout, env=dict(os.environ, **(env or {})), preexec_fn=limit)
    err = [ln for ln in r.stderr.splitlines() if ln.strip() and not ln.lstrip().startswith("[")]
    return {"command": "s3d " + " ".join(args), "rc": r.returncode, "stderr_tail": err[-3:],
            "traceback": "Traceback" in r.stderr, "wall_s": round(time.time() - t0, 2)}


def _files(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file()) if d.exists() else []


def fault_kill(weights: Path, tmp: Path) -> dict:
    """SIGKILL the add-on's backend process while a job runs; then run the next job."""
    from blender_addon.transport.backend_process import BackendConfig, backend_for, stop_all
    from blender_addon.transport.http_client import BackendError
    from blender_addon.transport.job_runner import JobRequest, run_job

    strokes = json.loads(EXAMPLE.read_text())
    config = BackendConfig(backend_python=sys.executable, backend_root=str(ROOT), weights_dir=str(weights),
                           job_timeout_s=600)
    backend = backend_for(config)
    first = JobRequest({"kind": "strokes", "data": strokes, "name": "killed"},
                       {"resolution": 256, "views": 12}, str(tmp / "killed"), "killed")
    stages: list[str] = []
    killed_at: list[str] = []

    def on_progress(stage: str, fraction: float) -> None:
        stages.append(stage)
        if stage in ("density_grid", "mesh", "vertex_colors") and not killed_at:
            killed_at.append(f"{stage} ({fraction:.0%})")
            os.kill(backend.pid, signal.SIGKILL)

    record: dict = {"fault": "backend killed mid-job (SIGKILL, add-on path)"}
    pid_before = None
    try:
        backend.client()
        pid_before = backend.pid
        server_jobs = backend._ready["jobs_dir"]
        t0 = time.time()
        try:
            run_job(config, first, on_progress=on_progress)
            record["first_job"] = "completed (the kill came too late)"
        except BackendError as e:
            record["first_job"] = {"code": e.code, "message": str(e).splitlines()[0], "after_s": round(time.time() - t0, 1)}
        record["killed_at_stage"] = killed_at[0] if killed_at else None
        record["first_job_files_left"] = _files(tmp / "killed")  # the add-on's download folder
        record.update(_server_folder_after_kill(Path(server_jobs), tmp))  # the killed server's own job folder
        second = JobRequest({"kind": "strokes", "data": strokes, "name": "after"}, {"resolution": 64, "views": 4},
                            str(tmp / "after"), "after")
        t0 = time.time()
        res = run_job(config, second)
        record["second_job"] = {"state": res.status["state"], "files": len(res.files),
                                "wall_s_incl_restart": round(time.time() - t0, 1)}
        record["restarts"] = backend.restarts
        record["last_crash"] = backend.last_crash
        record["new_pid"] = backend.pid != pid_before
    finally:
        stop_all()
    record["ok"] = (isinstance(record.get("first_job"), dict) and record["first_job"]["code"] == "backend_crashed"
                    and record["first_job_files_left"] == [] and record.get("second_job", {}).get("state") == "done"
                    and record.get("restarts") == 1 and record["server_half_job_folders"] == []
                    and record["after_restart"].get("state") == "failed"
                    and record["after_restart"].get("code") == "interrupted" and record["temps_after_restart"] == [])
    return record


def _server_folder_after_kill(jobs: Path, tmp: Path) -> dict:
    """What a SIGKILLed server left in its own jobs folder, and what a server restarted on that folder says.

    A half-written job folder is a ``<job id>/`` folder without ``result.json``; the job's temporary folder
    (``.<id>.s3d-tmp-*``) may remain until the restart, which must remove it and answer the killed job as
    failed (``interrupted``)."""
    index = json.loads((jobs / "jobs.json").read_text())["jobs"]
    killed = [j["job_id"] for j in index if j["state"] == "running"]
    rec = {"server_jobs_after_kill": _files(jobs) + sorted(p.name + "/" for p in jobs.iterdir() if p.is_dir()),
           "server_half_job_folders": [p.name for p in jobs.iterdir()
                                       if p.is_dir() and not p.name.startswith(".") and not (p / "result.json").exists()]}
    token_file = tmp / "restart_token"
    proc = subprocess.Popen([sys.executable, "-m", "backend.cli", "serve", "--port", "0", "--token-file", str(token_file),
                             "--jobs-dir", str(jobs), "--weights", str(tmp / "no_weights")], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        port = json.loads(proc.stdout.readline()[len("S3D_READY "):])["port"]
        token = token_file.read_text().strip()
        st = _call(port, token, "GET", f"/v1/jobs/{killed[0]}")[1] if killed else {}
        rec["after_restart"] = {"job": killed[0] if killed else None, "state": st.get("state"),
                                "code": (st.get("error") or {}).get("code")}
        rec["temps_after_restart"] = [p.name for p in jobs.iterdir() if ".s3d-tmp-" in p.name]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(jobs, ignore_errors=True)  # the add-on's server used a temporary folder
    return rec


def fault_weights(weights: Path, tmp: Path) -> dict:
    bad = tmp / "weights_corrupt"
    shutil.copytree(weights, bad)
    target = bad / "mask2triplane_lite.safetensors"
    data = bytearray(target.read_bytes())
    for i in range(1000, len(data), len(data) // 7):
        data[i] ^= 0xFF
    target.write_bytes(bytes(data))
    expected = json.loads((bad / "mask2triplane_lite.json").read_text())["sha256"]
    r = _cli(["generate", str(EXAMPLE), "--out", str(tmp / "out_weights"), "--weights", str(bad), "--quiet"])
    text = " ".join(r["stderr_tail"])
    r.update(fault="weights file corrupted (7 bytes flipped)",
             ok=r["rc"] == 1 and str(target) in text and expected in text and not r["traceback"]
             and _files(tmp / "out_weights") == [])
    return r


def fault_cuda(weights: Path, tmp: Path) -> dict:
    import torch

    r = _cli(["generate", str(EXAMPLE), "--out", str(tmp / "out_cuda"), "--weights", str(weights), "--device", "cuda",
              "--quiet"])
    r.update(fault="CUDA requested, none present" if not torch.cuda.is_available() else "CUDA requested (present!)",
             ok=r["rc"] == 1 and "device_unavailable" in " ".join(r["stderr_tail"]) and not r["traceback"])
    return r


def fault_resolution(weights: Path, tmp: Path, limit_gb: float) -> list[dict]:
    r1 = _cli(["generate", str(EXAMPLE), "--out", str(tmp / "out_res"), "--weights", str(weights),
               "--resolution", "1024", "--quiet"])
    r1.update(fault="grid resolution 1024 (above the supported ones)",
              ok=r1["rc"] != 0 and "bad_option" in " ".join(r1["stderr_tail"]) and not r1["traceback"])
    r2 = _cli(["generate", str(EXAMPLE), "--out", str(tmp / "out_oom"), "--weights", str(weights),
               "--resolution", "256", "--views", "12", "--threads", "1", "--quiet"],
              limit_as_bytes=int(limit_gb * 2 ** 30))
    text = " ".join(r2["stderr_tail"])
    r2.update(fault=f"out of memory at resolution 256 (address space capped at {limit_gb} GB)",
              files_left=_files(tmp / "out_oom"),
              ok=r2["rc"] == 1 and "out_of_memory" in text and "--resolution" in text and not r2["traceback"]
              and _files(tmp / "out_oom") == [])
    return [r1, r2]


def _call(port: int, token: str, method: str, path: str, body=None) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.request(method, path, body=json.dumps(body).encode() if body is not None else None,
                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    resp = conn.getresponse()
    data = json.loads(resp.read())
    conn.close()
    return resp.status, data


def fault_load(weights: Path, tmp: Path, clients: int, jobs: int, max_queue: int) -> dict:
    """``clients`` threads x ``jobs`` jobs each against one ``s3d serve`` (resolution 64, 4 views)."""
    token_file = tmp / "token"
    proc = subprocess.Popen([sys.executable, "-m", "backend.cli", "serve", "--port", "0", "--token-file",
                             str(token_file), "--weights", str(weights), "--max-queue", str(max_queue),
                             "--jobs-dir", str(tmp / "jobs")], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    outcomes: list[str] = []
    problems: list[str] = []
    lock = threading.Lock()
    strokes = json.loads(EXAMPLE.read_text())
    try:
        line = proc.stdout.readline()
        port = json.loads(line[len("S3D_READY "):])["port"]
        token = token_file.read_text().strip()

        def client(k: int) -> None:
            for j in range(jobs):
                try:
                    code, body = _call(port, token, "POST", "/v1/jobs", {
                        "input": {"kind": "strokes", "data": strokes, "name": f"c{k}j{j}"},
                        "options": {"resolution": 64, "views": 4, "seed": k * 100 + j}})
                    if code == 429 and body["error"]["code"] == "queue_full":
                        with lock:
                            outcomes.append("refused")
                        continue
                    if code != 202:
                        raise RuntimeError(f"submit answered {code} {body}")
                    t0 = time.time()
                    while True:
                        code, st = _call(port, token, "GET", f"/v1/jobs/{body['job_id']}")
                        if st["state"] in ("done", "failed", "cancelled"):
                            break
                        if time.time() - t0 > 600:
                            raise RuntimeError(f"job {body['job_id']} stuck in {st['state']}")
                        time.sleep(0.1)
                    with lock:
                        outcomes.append(st["state"] if st["state"] != "failed" else f"failed:{st['error']['code']}")
                except Exception as e:  # noqa: BLE001 - every problem is recorded
                    with lock:
                        problems.append(f"{type(e).__name__}: {e}")

        t0 = time.time()
        threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.time() - t0
        health = _call(port, token, "GET", "/v1/health")[0]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    total = clients * jobs
    rec = {"fault": f"load: {clients} clients x {jobs} jobs, queue {max_queue}", "clients": clients,
           "jobs": total, "completed": outcomes.count("done"), "refused_429": outcomes.count("refused"),
           "failed": [o for o in outcomes if o.startswith("failed")], "lost": total - len(outcomes),
           "problems": problems[:5], "wall_s": round(wall, 1), "health_after": health}
    rec["ok"] = rec["lost"] == 0 and not problems and not rec["failed"] and health == 200
    return rec


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weights", default=str(ROOT / "weights"), help="weights folder (bundled weights/)")
    ap.add_argument("--out", default=None, help="write the records as JSON here")
    ap.add_argument("--only", default="kill,weights,cuda,resolution,load", help="comma-separated faults")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--jobs", type=int, default=4, help="jobs per client")
    ap.add_argument("--max-queue", type=int, default=4)
    ap.add_argument("--oom-limit-gb", type=float, default=1.2, help="address-space cap for the out-of-memory run")
    args = ap.parse_args(argv)
    weights = Path(args.weights)
    only = set(args.only.split(","))
    records: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="s3d-faults-") as td:
        tmp = Path(td)
        for name, fn in [("kill", lambda: fault_kill(weights, tmp)), ("weights", lambda: fault_weights(weights, tmp)),
                         ("cuda", lambda: fault_cuda(weights, tmp)),
                         ("resolution", lambda: fault_resolution(weights, tmp, args.oom_limit_gb)),
                         ("load", lambda: fault_load(weights, tmp, args.clients, args.jobs, args.max_queue))]:
            if name not in only:
                continue
            t0 = time.time()
            out = fn()
            for rec in out if isinstance(out, list) else [out]:
                rec["script_s"] = round(time.time() - t0, 1)
                records.append(rec)
                print(json.dumps(rec, indent=1), flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(records, indent=2) + "\n")
    print("\n| fault | ok | outcome |\n|---|---|---|")
    for r in records:
        outcome = r.get("first_job") or r.get("stderr_tail") or {k: r[k] for k in ("completed", "refused_429", "lost")
                                                                   if k in r}
        print(f"| {r['fault']} | {r['ok']} | {json.dumps(outcome)[:300]} |")
    return 0 if all(r["ok"] for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
