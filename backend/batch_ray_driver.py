"""The driver side of ``s3d batch --engine ray``: the :class:`Converter` actors and the loop that hands
them items, one in flight per actor, and requeues the item of an actor that died (backend/batch_ray.py
runs the batch and writes its summary; docs/scale-out.md)."""
from __future__ import annotations

import os
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

#: readiness checks (0.1 s apart) an actor may answer "unavailable" while Ray restarts it
MAX_UNAVAILABLE_PINGS = 600


class Converter:
    """A Ray actor body: loads the models once, then converts items one call at a time.

    Uses the plain batch's worker functions (``backend.batch.worker_init`` / ``convert_one``), so both
    engines convert an item identically and report failures with the same codes.
    """

    def __init__(self, index: int, weights: str | None, device: str, threads: int, need_sketch: bool):
        from backend.batch import worker_init

        self.index = index
        worker_init(weights, device, threads, need_sketch)

    def ready(self) -> dict:
        """``{"pid", "node"}``: answers once the actor (re)started and loaded its models."""
        import ray

        return {"pid": os.getpid(), "node": ray.util.get_node_ip_address()}

    def convert(self, src: str, dest: str, options: dict) -> dict:
        """One item -> ``dest`` (atomic); the plain batch's result dict plus ``worker`` and ``pid``."""
        from backend.batch import convert_one

        r = convert_one((src, dest, options))
        return dict(r, worker=self.index, pid=os.getpid())


class Driver:
    """One batch on ``n_workers`` :class:`Converter` actors: :meth:`run` converts ``todo`` (pairs of input
    and output folder as strings) and returns ``(results, retried, per_worker stats, convert_s)``.

    Ray restarts a dead actor (``max_restarts``) but does not replay its call (``max_task_retries=0``):
    the driver requeues the item itself, so it can count the retry and cap it per item.
    """

    def __init__(self, ray, todo, opts, n_workers, threads, gpus, max_retries, weights, device, need_sketch,
                 quiet, tqdm):
        self.ray, self.opts, self.max_retries, self.total = ray, opts, max_retries, len(todo)
        cls = ray.remote(Converter).options(num_cpus=threads, num_gpus=gpus, max_restarts=max_retries + 1,
                                            max_task_retries=0)
        self.actors = [cls.remote(i, weights, device, threads, need_sketch) for i in range(n_workers)]
        self.stats = [{"worker": i, "done": 0, "failed": 0, "lost": 0, "pids": [], "node": None}
                      for i in range(n_workers)]
        self.queue = deque(todo)
        self.attempts: dict[str, int] = {}
        self.results: list[dict] = []
        self.retried: list[dict] = []
        self.inflight: dict[Any, tuple[int, tuple[str, str]]] = {}
        self.pinging = {self.actors[i].ready.remote(): i for i in range(n_workers)}  # free once loaded
        self.free: list[int] = []
        self.unavailable = [0] * n_workers
        self.bar = tqdm(total=len(todo), desc="s3d batch (ray)", unit="file", disable=quiet, file=sys.stderr)
        self.first_start: float | None = None

    def run(self) -> tuple[list[dict], list[dict], list[dict], float]:
        """The driver loop: one item in flight per actor; dead actors' items requeued (see the module doc)."""
        try:
            while self.queue or self.inflight or self.pinging:
                self._hand_out()
                if not self.inflight and not self.pinging:
                    break  # every actor is gone for good
                ready, _ = self.ray.wait(list(self.inflight) + list(self.pinging), num_returns=1)
                ref = ready[0]
                if ref in self.pinging:
                    self._on_ready(ref)
                else:
                    self._on_result(ref)
            self._fail_leftovers()
        finally:
            self.bar.close()
            for a in self.actors:
                self.ray.kill(a, no_restart=True)
        convert_s = time.perf_counter() - self.first_start if self.first_start is not None else 0.0
        return self.results, self.retried, self.stats, convert_s

    def _postfix(self, refresh: bool) -> None:
        self.bar.set_postfix(done=sum(x["ok"] for x in self.results), failed=sum(not x["ok"] for x in self.results),
                             retried=len(self.retried), refresh=refresh)

    def _finish(self, r: dict) -> None:
        self.results.append(r)
        self._postfix(False)
        self.bar.update(1)

    def _hand_out(self) -> None:
        """Give every free actor the next item (an item a lost worker had committed counts as done)."""
        from backend.batch import finished_result

        if self.free and self.queue and self.first_start is None:
            self.first_start = time.perf_counter()  # workers loaded: the steady-state clock starts
            self.bar.reset(total=self.total)  # items per second without Ray's start-up
        while self.free and self.queue:
            i = self.free.pop(0)
            src, dest = self.queue.popleft()
            if self.attempts.get(src) and finished_result(Path(src), Path(dest), self.opts):
                # the lost worker had committed it before dying: done, not converted twice
                self._finish({"input": src, "ok": True, "out": dest, "recovered": True, "worker": i})
                self.free.append(i)
                continue
            self.inflight[self.actors[i].convert.remote(src, dest, self.opts)] = (i, (src, dest))

    def _on_ready(self, ref) -> None:
        """An actor's readiness answer: free it, ask again while Ray restarts it, or give it up."""
        ray = self.ray
        i = self.pinging.pop(ref)
        try:
            info = ray.get(ref)
        except ray.exceptions.ActorDiedError as e:
            # restarts used up, or it cannot start (e.g. the project is not installed on that node)
            self.stats[i]["error"] = str(e).strip().splitlines()[-1][:300] if str(e).strip() else type(e).__name__
            return
        except ray.exceptions.RayError:  # unavailable while Ray restarts it: ask again shortly
            self.unavailable[i] += 1
            if self.unavailable[i] <= MAX_UNAVAILABLE_PINGS:
                time.sleep(0.1)
                self.pinging[self.actors[i].ready.remote()] = i
            return
        self.unavailable[i] = 0
        self.stats[i]["node"] = info["node"]
        if info["pid"] not in self.stats[i]["pids"]:
            self.stats[i]["pids"].append(info["pid"])
        self.free.append(i)

    def _on_result(self, ref) -> None:
        """An item's answer: record it, or (its worker died) requeue it up to ``max_retries`` times."""
        ray = self.ray
        i, (src, dest) = self.inflight.pop(ref)
        try:
            r = ray.get(ref)
        except ray.exceptions.RayTaskError as e:  # raised inside convert, past convert_one's handler
            r = {"input": src, "ok": False, "code": "internal_error", "message": str(e).splitlines()[0][:300],
                 "worker": i}
        except ray.exceptions.RayError as e:  # the worker process died (or its node did)
            self.stats[i]["lost"] += 1
            self.attempts[src] = self.attempts.get(src, 0) + 1
            self.retried.append({"input": src, "worker": i, "attempt": self.attempts[src], "error": type(e).__name__})
            if self.attempts[src] > self.max_retries:
                self._finish({"input": src, "ok": False, "code": "worker_lost",
                              "message": f"the worker converting it died {self.attempts[src]} times "
                                         f"({type(e).__name__}); see the Ray logs of the node, often the OOM killer",
                              "worker": i})
            else:
                self.queue.appendleft((src, dest))
                self._postfix(True)
            self.pinging[self.actors[i].ready.remote()] = i  # back in the pool once restarted
            return
        self.stats[i]["done" if r["ok"] else "failed"] += 1
        self._finish(r)
        self.free.append(i)

    def _fail_leftovers(self) -> None:
        """Items still queued when no actor is left fail with ``worker_lost``."""
        why = "; ".join(sorted({w["error"] for w in self.stats if w.get("error")}))
        for src, _dest in self.queue:  # only when no actor is left
            self._finish({"input": src, "ok": False, "code": "worker_lost",
                          "message": "no Ray worker left to convert it (every worker died more often than "
                                     f"--max-retries, or could not start){': ' + why if why else ''}"})
