"""Load run of the job server (issue 42): N concurrent clients x M jobs against one ``s3d serve``, with
8192 x 8192 PNG uploads in the mix; reports the server's peak resident memory and the jobs lost.

Each client submits its jobs one after another (stroke JSON, ``--resolution`` / ``--views``); a 429
``queue_full`` is retried after a short wait, so every job ends ``done``, ``failed`` (with its code) or
refused with a coded 4xx (the big uploads: ``image_too_large``). A job is *lost* when its client never
learns a final state. Peak memory is the kernel's high-water mark of the server process (``VmHWM`` in
``/proc/<pid>/status``), read just before the server is stopped; the script also samples ``VmRSS``.

Usage (repository root; bundled weights)::

    .venv/bin/python benchmarks/load_run.py --clients 16 --jobs 3 --resolution 64 --views 4 \\
        --out /work/runs/load_run.json
"""
from __future__ import annotations

import argparse
import base64
import http.client
import io
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "head_front.json"


def _mem_kb(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _call(port: int, token: str, method: str, path: str, body: bytes | None = None) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    conn.request(method, path, body=body, headers={"Authorization": f"Bearer {token}",
                                                   "Content-Type": "application/json"})
    resp = conn.getresponse()
    data = json.loads(resp.read() or b"{}")
    conn.close()
    return resp.status, data


def _big_png(side: int, mode: str = "L") -> bytes:
    from PIL import Image

    im = Image.new(mode, (side, side), 255 if mode == "L" else (255, 255, 255))
    im.paste(0 if mode == "L" else (0, 0, 0), (side // 4, side // 2, 3 * side // 4, side // 2 + side // 64))  # one dark bar: not blank
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--jobs", type=int, default=3, help="jobs per client")
    ap.add_argument("--big-uploads", type=int, default=1, help="jobs replaced by an 8192^2 PNG upload")
    ap.add_argument("--big-side", type=int, default=8192)
    ap.add_argument("--big-mode", default="L", help="Pillow mode of the big uploads (L or RGB)")
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--views", type=int, default=4)
    ap.add_argument("--max-queue", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the server")
    ap.add_argument("--weights", default=str(ROOT / "weights"))
    ap.add_argument("--out", default=None, help="write the record as JSON here")
    args = ap.parse_args(argv)

    strokes = json.loads(EXAMPLE.read_text())
    big = base64.b64encode(_big_png(args.big_side, args.big_mode)).decode()
    opts = {"resolution": args.resolution, "views": args.views}
    plan = [[("big" if j == 0 and k < args.big_uploads else "strokes") for j in range(args.jobs)]
            for k in range(args.clients)]  # the big uploads are the first jobs of different clients: at once
    outcomes: list[dict] = []
    problems: list[str] = []
    lock = threading.Lock()
    retries = [0]
    rss_samples: list[int] = []
    with tempfile.TemporaryDirectory(prefix="s3d-load-") as td:
        tmp = Path(td)
        token_file = tmp / "token"
        proc = subprocess.Popen([sys.executable, "-m", "backend.cli", "serve", "--port", "0", "--token-file",
                                 str(token_file), "--weights", args.weights, "--max-queue", str(args.max_queue),
                                 "--jobs-dir", str(tmp / "jobs"), "--threads", str(args.threads)], cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            port = json.loads(proc.stdout.readline()[len("S3D_READY "):])["port"]
            token = token_file.read_text().strip()
            rss_start = _mem_kb(proc.pid, "VmRSS")
            stop = threading.Event()

            def sample() -> None:
                while not stop.is_set():
                    rss_samples.append(_mem_kb(proc.pid, "VmRSS"))
                    time.sleep(0.05)

            def client(k: int) -> None:
                for j, kind in enumerate(plan[k]):
                    inp = ({"kind": "sketch_png", "data": big, "name": f"c{k}j{j}-big"} if kind == "big" else
                           {"kind": "strokes", "data": strokes, "name": f"c{k}j{j}"})
                    body = json.dumps({"input": inp, "options": dict(opts, seed=k * 100 + j)}).encode()
                    rec = {"client": k, "job": j, "kind": kind}
                    try:
                        t0 = time.time()
                        while True:
                            code, ans = _call(port, token, "POST", "/v1/jobs", body)
                            if code != 429:
                                break
                            with lock:
                                retries[0] += 1
                            time.sleep(0.5)
                        rec["submit_s"] = round(time.time() - t0, 2)
                        if code != 202:
                            rec.update(state="refused", status=code, code=ans.get("error", {}).get("code"))
                        else:
                            while True:
                                _, st = _call(port, token, "GET", f"/v1/jobs/{ans['job_id']}")
                                if st["state"] in ("done", "failed", "cancelled"):
                                    break
                                time.sleep(0.2)
                            rec.update(state=st["state"], job_id=ans["job_id"],
                                       code=(st.get("error") or {}).get("code"))
                        with lock:
                            outcomes.append(rec)
                    except Exception as e:  # noqa: BLE001 - recorded: the job's outcome is unknown (lost)
                        with lock:
                            problems.append(f"c{k}j{j}: {type(e).__name__}: {e}")

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            t0 = time.time()
            threads = [threading.Thread(target=client, args=(k,)) for k in range(args.clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.time() - t0
            stop.set()
            health = _call(port, token, "GET", "/v1/health")[0]
            peak_kb = _mem_kb(proc.pid, "VmHWM")
            jobs_dir = tmp / "jobs"
            done_ids = [o["job_id"] for o in outcomes if o["state"] == "done"]
            missing_results = [i for i in done_ids if not (jobs_dir / i / "result.json").is_file()]
            temps_left = [p.name for p in jobs_dir.iterdir() if ".s3d-tmp-" in p.name]
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    total = args.clients * args.jobs
    states = [o["state"] for o in outcomes]
    rec = {"clients": args.clients, "jobs_per_client": args.jobs, "jobs": total, "big_uploads": args.big_uploads,
           "big_side": args.big_side, "big_mode": args.big_mode, "big_upload_bytes_base64": len(big), "options": opts, "max_queue": args.max_queue,
           "done": states.count("done"), "failed": [o["code"] for o in outcomes if o["state"] == "failed"],
           "refused": [f"{o['status']} {o['code']}" for o in outcomes if o["state"] == "refused"],
           "lost": total - len(outcomes), "problems": problems[:5], "queue_full_retries": retries[0],
           "server_rss_start_mb": round(rss_start / 1024, 1), "server_peak_rss_mb": round(peak_kb / 1024, 1),
           "sampled_max_rss_mb": round(max(rss_samples, default=0) / 1024, 1), "wall_s": round(wall, 1),
           "health_after": health, "done_without_result_json": missing_results, "temp_folders_left": temps_left,
           "big_submit_s": [o.get("submit_s") for o in outcomes if o["kind"] == "big"]}
    rec["ok"] = (rec["lost"] == 0 and not problems and health == 200 and not missing_results and not temps_left
                 and rec["server_peak_rss_mb"] < 2048)
    print(json.dumps(rec, indent=1))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(rec, indent=2) + "\n")
    return 0 if rec["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
