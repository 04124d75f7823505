"""Mutation check of the hardening tests (issue 42): does each test fail when the code it guards breaks?

For every (test, mutant) pair below the script copies ``backend/``, ``tests/``, ``examples/`` and
``pyproject.toml`` to a fresh temporary folder, applies the mutant there (a text replacement in one or
more source files; the working tree is never touched), runs that one test with the copy first on
``PYTHONPATH``, and records whether it failed. A baseline run of every listed test on an unmutated copy
must pass first. Output: a JSON record and a markdown table (docs/reliability.md).

Usage (repository root)::

    .venv/bin/python benchmarks/mutation_check.py --out /work/runs/mutation.json
    .venv/bin/python benchmarks/mutation_check.py --only host,cap      # mutants whose name contains these
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
H = "tests/test_hardening.py::"
S = "tests/test_server.py::"

#: (name, test node id, what the mutant breaks, [(file, old text, new text), ...]); the first occurrence of
#: ``old`` is replaced.
MUTANTS: list[tuple[str, str, str, list[tuple[str, str, str]]]] = [
    ("lock", H + "test_two_jobs_into_one_folder_never_mix", "the output lock never locks",
     [("backend/job_output.py", "fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)", "pass")]),
    ("merge", H + "test_two_jobs_into_one_folder_never_mix", "the previous job's outputs are kept on commit",
     [("backend/job_output.py", "            if p.resolve().parent.is_relative_to(dest.resolve()) and p.is_file():\n"
       "                p.unlink()", "            pass")]),
    ("parents", H + "test_failed_or_refused_jobs_leave_no_folder", "a failed job keeps the parents it created",
     [("backend/job_output.py", "                p.rmdir()\n            except OSError:\n                break",
       "                pass\n            except OSError:\n                break")]),
    ("in_place", H + "test_failing_jobs_leave_no_partial_files", "the job writes straight into --out",
     [("backend/pipeline.py", "result = _run_stages(source, out.tmp,", "result = _run_stages(source, out.dest,")]),
    ("early_reserve", H + "test_generate_into_an_unwritable_folder_is_a_clear_error",
     "the output is not reserved up front (the job writes into a system temp folder, checks nothing)",
     [("backend/job_output.py", "self._lock = _Lock(dest).__enter__()", "self._lock = None"),
      ("backend/job_output.py", 'tmp = dest.parent / f".{dest.name}{TEMP_MARK}{secrets.token_hex(6)}"',
       'tmp = Path(__import__("tempfile").mkdtemp())'),
      ("backend/job_output.py", "tmp.mkdir(mode=0o777 & ~_UMASK)", "pass")]),
    ("max_faces", H + "test_numeric_options_are_range_checked", "max_faces only needs to be >= 0",
     [("backend/options.py", "self.max_faces == 0 or MIN_FACES <= self.max_faces <= MAX_FACES",
       "self.max_faces >= 0")]),
    ("bool_ints", H + "test_numeric_options_are_range_checked", "true / false count as numbers",
     [("backend/options.py", "return isinstance(v, int) and not isinstance(v, bool)", "return isinstance(v, int)")]),
    ("cli_max_faces", H + "test_cli_max_faces_1_is_a_coded_error_and_leaves_no_folder", "max_faces only needs to be >= 0",
     [("backend/options.py", "self.max_faces == 0 or MIN_FACES <= self.max_faces <= MAX_FACES",
       "self.max_faces >= 0")]),
    ("strokes_prop", H + "test_stroke_decoder_returns_a_sketch_or_a_coded_error", "stroke ranges not checked",
     [("backend/input_limits.py", 'if not isinstance(doc, dict) or not isinstance(doc.get("strokes"), list):',
       "if True:")]),
    ("strokes_named", H + "test_named_stroke_mistakes_get_their_codes", "stroke ranges not checked",
     [("backend/input_limits.py", 'if not isinstance(doc, dict) or not isinstance(doc.get("strokes"), list):',
       "if True:")]),
    ("width_cap", H + "test_stroke_widths_at_the_limit_draw_and_beyond_it_are_refused", "no upper width limit",
     [("backend/input_limits.py", "0 <= width <= top", "0 <= width")]),
    ("pixel_cap", H + "test_image_limits_are_checked_from_the_header", "no pixel cap from the header",
     [("backend/input_limits.py", "    if w * h > MAX_DECODE_PIXELS * k * k:\n", "    if False:\n")]),
    ("frames", H + "test_image_limits_are_checked_from_the_header", "multi-frame images not refused",
     [("backend/input_limits.py", "    if frames:\n", "    if False:\n")]),
    ("header_skip", H + "test_image_limits_are_checked_from_the_header", "bytes go straight to the old decoder",
     [("backend/input_limits.py", "        im = open_image_checked(data, where, HINT_SKETCH, draft_to=MAX_SKETCH_PIXELS)\n",
       "        return load_sketch(data, **kwargs)\n")]),
    ("reduce", H + "test_image_limits_are_checked_from_the_header", "large sketches converted to grey at full size",
     [("backend/input_limits.py", "    if w * h <= MAX_SKETCH_PIXELS:\n        return im, None", "    if True:\n        return im, None")]),
    ("server_intake", H + "test_http_stroke_width_and_max_faces_are_400_not_500", "the server's early check skipped",
     [("backend/server_uploads.py", 'load_mask_checked(source) if kind == "mask_png" else load_sketch_checked(source)',
       "None")]),
    ("decode_sem", H + "test_decodes_in_flight_are_bounded", "no decode semaphore",
     [("backend/server_uploads.py", "if not decodes.acquire(timeout=REQUEST_TIMEOUT_S):", "if not True:"),
      ("backend/server_uploads.py", "        decodes.release()\n", "        pass\n")]),
    ("host", H + "test_host_header_must_be_the_bound_address", "Host not checked",
     [("backend/server_http.py", "if not self._host_allowed():", "if False:")]),
    ("conn_cap", H + "test_connections_beyond_the_cap_get_503_and_are_closed", "no connection cap",
     [("backend/server_http.py", "if not self.slots.acquire(blocking=False):", "if False:"),
      ("backend/server_http.py", "            self.slots.release()\n", "            pass\n")]),
    ("recover_temps", H + "test_kill_9_mid_job_then_restart_leaves_no_half_folder[export]",
     "half-written temp folders kept on start",
     [("backend/server_records.py", '"removed": len(remove_stale_temps(jobs_dir))', '"removed": 0')]),
    ("recover_index", H + "test_kill_9_mid_job_then_restart_leaves_no_half_folder[density_grid]",
     "the job index is not reloaded",
     [("backend/server_records.py", 'records = index.get("jobs", []) if isinstance(index, dict) else []', "records = []")]),
    ("startup_port", S + "test_serve_start_up_errors_are_one_coded_sentence", "a busy port is not named",
     [("backend/server.py", "if e.errno == errno.EADDRINUSE:", "if False:")]),
    ("startup_jobs", S + "test_serve_start_up_errors_are_one_coded_sentence", "jobs folder error is a traceback",
     [("backend/server.py", 'raise StartupError("jobs_dir_not_writable"', 'raise OSError("jobs_dir_not_writable"')]),
    ("clean_exit", S + "test_serve_clean_exit_removes_its_temp_jobs_folder_and_token_file", "no SIGTERM handler",
     [("backend/server.py", "main_thread = threading.current_thread() is threading.main_thread()",
       "main_thread = False")]),
    ("send_error_500", H + "test_malformed_http_and_stalled_bodies_get_json_errors",
     "bad request lines answered 500 internal_error",
     [("backend/server_http.py", "status = 405 if code == 501 else code", "status = 500"),
      ("backend/server_http.py", 'stable.get(code, f"http_{code}")', '"internal_error"')]),
    ("fuzz_500", H + "test_fuzzed_requests_get_json_answers_and_the_server_lives_on",
     "bad request lines answered 500 internal_error",
     [("backend/server_http.py", "status = 405 if code == 501 else code", "status = 500"),
      ("backend/server_http.py", 'stable.get(code, f"http_{code}")', '"internal_error"')]),
    ("deep_json", H + "test_nested_options_and_deep_json_are_client_errors", "RecursionError not caught in the body",
     [("backend/server_http.py", "except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:",
       "except (UnicodeDecodeError, json.JSONDecodeError) as e:")]),
    ("queue_bound", H + "test_concurrent_clients_every_job_completes_or_is_refused", "the queue is unbounded",
     [("backend/server_jobs.py", "queue.Queue(maxsize=max_queue)", "queue.Queue(maxsize=0)")]),
    ("path_escape", H + "test_file_names_escaping_the_job_folder_are_refused", "any path under / is served",
     [("backend/server_jobs.py", "        if rel not in files:\n", "        if False:\n"),
      ("backend/server_jobs.py", "if job.out_dir.resolve() not in path.parents or not path.is_file():",
       "if not path.is_file():")]),
    ("forgotten_job", H + "test_a_cancelled_queued_job_that_is_forgotten_does_not_stop_the_worker",
     "the worker assumes a queued job still exists",
     [("backend/server_jobs.py", 'if job is None or job.state == "cancelled":', 'if job.state == "cancelled":')]),
    ("image_errors", H + "test_random_bytes_never_escape_the_image_decoder", "decoder errors escape the header check",
     [("backend/input_limits.py", "    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError):\n"
       "        raise IntakeError(\"image_unreadable\"", "    except UnidentifiedImageError:\n"
       "        raise IntakeError(\"image_unreadable\"")]),
    ("image_side", H + "test_image_decoder_returns_a_sketch_or_a_coded_error", "no side limit",
     [("backend/input_limits.py", "    if max(w, h) > MAX_SIDE_PX:\n", "    if False:\n"),
      ("backend/sketch/intake.py", "if max(im.size) > MAX_SIDE_PX:", "if False:"),
      ("backend/sketch/intake.py", "if max(im.size) > MAX_SIDE_PX:", "if False:"),
      ("backend/sketch/intake.py", "if max(h, w) > MAX_SIDE_PX:", "if False:")]),
    ("bomb", H + "test_decompression_bombs_are_refused_before_decoding", "no side limit in the old decoder",
     [("backend/sketch/intake.py", "if max(im.size) > MAX_SIDE_PX:", "if False:")]),
    ("points_cap", H + "test_millions_of_points_are_refused", "no limit on the number of points",
     [("backend/sketch/raster.py", "if total > MAX_POINTS:", "if False:")]),
    ("nesting", H + "test_deeply_nested_stroke_json_is_a_coded_error", "RecursionError not caught in stroke JSON",
     [("backend/sketch/intake.py", "    except RecursionError:\n", "    except ZeroDivisionError:\n"),
      ("backend/input_limits.py", "except (UnicodeDecodeError, ValueError, RecursionError):",
       "except (UnicodeDecodeError, ValueError):")]),
    ("mask_ids", H + "test_id_maps_with_any_ids_are_read_or_refused_with_a_code", "ids above 18 accepted",
     [("backend/mask_intake.py", "if top >= NUM_CLASSES or low < 0:", "if False:")]),
    ("palette", H + "test_antialiased_palette_maps_snap_to_the_label_set", "colours snap to the farthest entry",
     [("backend/mask_intake.py", "nearest = d.argmin(axis=1)", "nearest = d.argmax(axis=1)")]),
]


def _copy(dst: Path) -> None:
    for name in ("backend", "tests", "examples"):
        shutil.copytree(ROOT / name, dst / name, ignore=shutil.ignore_patterns("__pycache__", ".hypothesis"))
    shutil.copy2(ROOT / "pyproject.toml", dst / "pyproject.toml")


def _run(copy: Path, tests: list[str], timeout: float) -> tuple[int, str, float]:
    env = dict(os.environ, PYTHONPATH=str(copy), PYTHONDONTWRITEBYTECODE="1")
    t0 = time.time()
    try:
        r = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests], cwd=copy,
                           env=env, capture_output=True, text=True, timeout=timeout)
        rc, tail = r.returncode, (r.stdout + r.stderr).strip().splitlines()[-1:]
    except subprocess.TimeoutExpired:
        rc, tail = -1, ["timed out"]
    return rc, " ".join(tail)[:200], round(time.time() - t0, 1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=None, help="write the records as JSON here")
    ap.add_argument("--only", default="", help="comma-separated parts of mutant names")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per test run")
    ap.add_argument("--no-baseline", action="store_true")
    args = ap.parse_args(argv)
    only = [o for o in args.only.split(",") if o]
    chosen = [m for m in MUTANTS if not only or any(o in m[0] for o in only)]
    records: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="s3d-mutants-") as td:
        if not args.no_baseline:
            base = Path(td) / "baseline"
            _copy(base)
            rc, tail, wall = _run(base, sorted({m[1] for m in chosen}), args.timeout * 3)
            records.append({"mutant": "none (baseline)", "test": "all listed", "rc": rc, "tail": tail, "wall_s": wall,
                            "ok": rc == 0})
            print(json.dumps(records[-1]), flush=True)
            if rc != 0:
                print("baseline failed: the tests must pass on the unmutated code first", file=sys.stderr)
                return 1
        for name, test, what, edits in chosen:
            copy = Path(td) / name
            _copy(copy)
            applied = True
            for rel, old, new in edits:
                f = copy / rel
                text = f.read_text()
                if old not in text:
                    applied = False
                    break
                f.write_text(text.replace(old, new, 1))
            rec = {"mutant": name, "breaks": what, "test": test}
            if not applied:
                rec.update(rc=None, tail=f"mutant text not found in {rel}", ok=False)
            else:
                rc, tail, wall = _run(copy, [test], args.timeout)
                rec.update(rc=rc, tail=tail, wall_s=wall, ok=rc != 0)  # the test must fail on the mutant
            records.append(rec)
            print(json.dumps(rec), flush=True)
            shutil.rmtree(copy, ignore_errors=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(records, indent=2) + "\n")
    print("\n| test | mutant (what it breaks) | test on the mutant |\n|---|---|---|")
    for r in records[0 if args.no_baseline else 1:]:
        verdict = "fails (caught)" if r["ok"] else ("NOT APPLIED" if r["rc"] is None else "passes (NOT caught)")
        print(f"| `{r['test'].split('::')[-1]}` | `{r['mutant']}`: {r['breaks']} | {verdict} |")
    return 0 if all(r["ok"] for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
