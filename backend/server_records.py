"""One job's record (:class:`Job`) and the job index on disk (``jobs.json`` in the jobs folder): written
atomically after every change, reloaded when a server starts on the same folder (docs/contracts.md
section 5; the server is split over backend/server*.py, see server.py)."""
from __future__ import annotations

import json
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backend.job_output import remove_stale_temps, write_json_atomic
from backend.pipeline import GenerateOptions
from backend.server_api import API_VERSION

#: The job index in the jobs folder (written atomically; reloaded on start).
INDEX_NAME = "jobs.json"
_JOB_ID_CHARS = set("0123456789abcdef")


@dataclass
class Job:
    """One job's state (guarded by :attr:`backend.server_jobs.JobServer.lock`)."""

    job_id: str
    source: Any
    options: GenerateOptions
    out_dir: Path
    name: str
    state: str = "queued"
    stage: str = "queued"
    progress: float = 0.0
    error: dict | None = None
    files: list[str] = field(default_factory=list)
    result: dict | None = None
    created: float = field(default_factory=time.time)
    cancel_event: threading.Event = field(default_factory=threading.Event)

    def record(self) -> dict[str, Any]:
        """What the job index keeps of this job (its result is re-read from ``result.json``)."""
        return {"job_id": self.job_id, "state": self.state, "stage": self.stage, "error": self.error,
                "files": list(self.files), "name": self.name, "created": self.created}

    def status(self) -> dict[str, Any]:
        """The status object of docs/contracts.md section 5."""
        return {"job_id": self.job_id, "state": self.state, "stage": self.stage, "progress": round(self.progress, 4),
                "error": self.error, "files": list(self.files), "result": self.result}


def is_job_id(name: Any) -> bool:
    """True for the server's own job folder names (16 lower-case hex digits)."""
    return isinstance(name, str) and len(name) == 16 and set(name) <= _JOB_ID_CHARS


def recover_jobs(jobs_dir: Path) -> tuple[dict[str, Job], dict[str, int]]:
    """Reload the job index of an earlier server on this jobs folder: finished jobs answer again,
    jobs that were queued or running are marked failed (``interrupted``), and half-written folders
    (temporary folders, job folders without a finished record) are removed.

    Returns:
        The jobs by id, and counts ``{"reloaded", "interrupted", "removed"}``.
    """
    counts = {"reloaded": 0, "interrupted": 0, "removed": len(remove_stale_temps(jobs_dir))}
    try:
        index = json.loads((jobs_dir / INDEX_NAME).read_text())
        records = index.get("jobs", []) if isinstance(index, dict) else []
    except (OSError, ValueError):
        records = []
    jobs: dict[str, Job] = {}
    for rec in records:
        if not isinstance(rec, dict) or not is_job_id(rec.get("job_id")):
            continue
        job = _restore(rec, jobs_dir, counts)
        jobs[job.job_id] = job
    for d in jobs_dir.iterdir():  # job folders that hold no finished job
        if d.is_dir() and is_job_id(d.name) and (d.name not in jobs or jobs[d.name].state != "done"):
            shutil.rmtree(d, ignore_errors=True)
            counts["removed"] += 1
    return jobs, counts


def _restore(rec: dict, jobs_dir: Path, counts: dict[str, int]) -> Job:
    """One index record -> a :class:`Job` (done, failed, cancelled or ``interrupted``); counts it."""
    job = Job(rec["job_id"], None, GenerateOptions(), jobs_dir / rec["job_id"], str(rec.get("name", "")),
              created=float(rec.get("created") or 0.0))
    state = rec.get("state")
    if state == "done" and (job.out_dir / "result.json").is_file():
        try:
            job.result = json.loads((job.out_dir / "result.json").read_text())
        except (OSError, ValueError):
            state = "lost"
    if state == "done" and job.result is not None:
        job.state, job.stage, job.progress = "done", "done", 1.0
        job.files = list(job.result.get("files", []))
        counts["reloaded"] += 1
    elif state in ("failed", "cancelled"):
        job.state, job.stage, job.error = state, rec.get("stage") or state, rec.get("error")
        counts["reloaded"] += 1
    else:
        job.state, job.stage = "failed", "interrupted"
        job.error = {"code": "interrupted", "message": f"the server stopped while this job was {state} "
                     "(a crash or a restart); its files were removed; submit it again"}
        counts["interrupted"] += 1
    return job


class JobIndex:
    """Writes ``jobs.json`` atomically: a snapshot taken under the job table's lock; an older snapshot
    never overwrites a newer one."""

    def __init__(self, jobs_dir: Path):
        self.path = jobs_dir / INDEX_NAME
        self._lock = threading.Lock()
        self._seq = self._written = 0

    def save(self, jobs_lock: threading.Lock, jobs: dict[str, Job]) -> None:
        """Snapshot ``jobs`` (under ``jobs_lock``) and write it, unless a newer snapshot was written."""
        with jobs_lock:
            self._seq += 1
            seq = self._seq
            snapshot = {"api": API_VERSION, "jobs": [j.record() for j in jobs.values()]}
        with self._lock:
            if seq < self._written:
                return
            try:
                write_json_atomic(self.path, snapshot)
                self._written = seq
            except OSError as e:  # the jobs still run; only a restart would lose their records
                print(f"s3d serve: cannot write the job index ({e})", file=sys.stderr, flush=True)
