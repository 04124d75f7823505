"""The add-on's one way to do work off Blender's main thread: a background task with typed events.

:class:`BackgroundTask` runs ``work(task)`` in a daemon thread. The work reports through
:meth:`BackgroundTask.emit` with the event types below, checks :meth:`BackgroundTask.cancelled` (or
waits on ``task.cancel_event``) and returns its result; the task then queues exactly one terminal event:
:class:`Finished` (the return value), :class:`Cancelled` (the work raised :class:`TaskCancelled`) or
:class:`Failed` (any other exception: its ``code`` attribute when it has one, such as
``BackendError.code``, else the exception's class name). The main thread takes the events with
:meth:`BackgroundTask.drain`; a task is also a job handle (``done`` / ``cancel`` / ``result``).

:class:`TaskSlot` holds at most one task of one kind (the Generate job, the backend check, the
environment set-up) and follows it from the main thread with a ``bpy.app.timers`` function that hands
each event to the slot's ``on_event`` and, after the terminal event, calls ``on_end``. Timers never fire
in background mode (``blender -b``, tests): there :meth:`TaskSlot.wait` runs the task to its end and
delivers the events on the calling thread, and tests may call :attr:`TaskSlot.timer` by hand.

Blender data is touched only on the main thread (docs/design.md section 6): ``work`` must not touch it.
Standard library only; ``bpy`` is imported inside the few functions that register timers.
"""
from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Any, Callable, Union


class TaskCancelled(Exception):
    """Raised by a task's work when it stopped because it was cancelled (``job_runner.JobCancelled`` is one)."""


@dataclass(frozen=True)
class Progress:
    """The work moved on: ``stage`` (a stable name, e.g. the backend's ``density_grid``), overall
    ``fraction`` 0..1 and ``message``, the words to show."""

    stage: str
    fraction: float
    message: str = ""


@dataclass(frozen=True)
class OutputLine:
    """One line of output of a program the work runs (e.g. pip's), to show as it comes."""

    line: str


@dataclass(frozen=True)
class PartResult:
    """Part ``index`` of a work of several parts (one job of a Variations run) finished with ``result``."""

    index: int
    result: Any


@dataclass(frozen=True)
class Finished:
    """Terminal: the work returned ``result``."""

    result: Any = None


@dataclass(frozen=True)
class Failed:
    """Terminal: the work raised ``error``; ``code`` is a stable snake_case id, ``message`` the sentence to show."""

    code: str
    message: str
    error: BaseException | None = None


@dataclass(frozen=True)
class Cancelled:
    """Terminal: the work stopped after a cancel (``error`` is the :class:`TaskCancelled` it raised)."""

    message: str = "Cancelled"
    error: BaseException | None = None


Event = Union[Progress, OutputLine, PartResult, Finished, Failed, Cancelled]
TERMINAL = (Finished, Failed, Cancelled)


def failure(error: BaseException) -> Failed:
    """The :class:`Failed` event of an exception: its ``code`` attribute when it has a string one, else its
    class name in lower case; the message is ``str(error)`` (or the class name when empty)."""
    code = getattr(error, "code", None)
    if not isinstance(code, str) or not code:
        code = type(error).__name__.lower()
    return Failed(code, str(error) or type(error).__name__, error)


class BackgroundTask:
    """``work(task)`` in a daemon thread, with a cancel event and a queue of typed events.

    Args:
        work: called with this task in the worker thread; reports with :meth:`emit`, stops when
            :meth:`cancelled` (raising :class:`TaskCancelled`, or returning), returns the result.
        name: the thread's name.

    The thread starts with :meth:`start` (which returns the task, so ``BackgroundTask(w).start()`` reads
    well); :meth:`run_here` runs the work on the calling thread instead.
    """

    def __init__(self, work: Callable[["BackgroundTask"], Any], name: str = "s3d-task"):
        self.work = work
        self.name = name
        self.cancel_event = threading.Event()
        self.events: queue.Queue = queue.Queue()
        self.outcome: Finished | Failed | Cancelled | None = None
        self._thread: threading.Thread | None = None

    # -- the worker's side -------------------------------------------------------------------------------------
    def emit(self, event: Event) -> None:
        """Queue an event for the main thread (any thread may call this)."""
        self.events.put(event)

    def cancelled(self) -> bool:
        """True once :meth:`cancel` was called."""
        return self.cancel_event.is_set()

    def run_here(self) -> None:
        """Run the work on this thread and queue its terminal event (what the worker thread does)."""
        try:
            outcome: Finished | Failed | Cancelled = Finished(self.work(self))
        except TaskCancelled as e:
            outcome = Cancelled(error=e)
        except BaseException as e:  # handed to the main thread as an event
            outcome = failure(e)
        self.outcome = outcome
        self.events.put(outcome)

    # -- the main thread's side --------------------------------------------------------------------------------
    def start(self) -> "BackgroundTask":
        """Start the worker thread; returns the task."""
        self._thread = threading.Thread(target=self.run_here, name=self.name, daemon=True)
        self._thread.start()
        return self

    def cancel(self) -> None:
        """Ask the work to stop (it checks :meth:`cancelled` or waits on :attr:`cancel_event`)."""
        self.cancel_event.set()

    def done(self) -> bool:
        """True once the work has returned or raised."""
        return self.outcome is not None

    def join(self, timeout: float | None = None) -> None:
        """Wait for the worker thread (tests, the synchronous path, shutdown)."""
        if self._thread is not None:
            self._thread.join(timeout)

    def drain(self) -> list[Event]:
        """All events queued so far, oldest first (non-blocking)."""
        out = []
        while True:
            try:
                out.append(self.events.get_nowait())
            except queue.Empty:
                return out

    def result(self) -> Any:
        """The work's return value; raises what it raised (cancelled: its :class:`TaskCancelled`). Call only
        when :meth:`done`."""
        outcome = self.outcome
        if outcome is None:
            raise RuntimeError(f"task {self.name!r} has not finished")
        if isinstance(outcome, Finished):
            return outcome.result
        raise outcome.error if outcome.error is not None else TaskCancelled(outcome.message)


class TaskSlot:
    """At most one :class:`BackgroundTask` of one kind, followed from the main thread by a timer.

    Args:
        name: the worker thread's name.
        on_event: ``on_event(event)``, main thread, for every event in order (the terminal one included).
        on_end: ``on_end(terminal_event)``, main thread, once, after the terminal event; when ``on_event``
            raised, the task is cancelled and ``on_end`` gets a :class:`Failed` with code ``internal_error``.
        interval_s: seconds between two runs of the timer.
        redraw: area types redrawn after each run of the timer (the panel, the preferences).

    Attributes:
        task: the running task, or None.
        timer: the ``bpy.app.timers`` function (registered by :meth:`start`; tests call it by hand).
    """

    def __init__(self, name: str, on_event: Callable[[Event], None],
                 on_end: Callable[[Finished | Failed | Cancelled], None] | None = None, *,
                 interval_s: float = 0.1, redraw: tuple[str, ...] = ("VIEW_3D", "PREFERENCES")):
        self.name = name
        self.on_event = on_event
        self.on_end = on_end
        self.interval_s = interval_s
        self.redraw = redraw
        self.task: BackgroundTask | None = None
        self.timer = self._timer  # one function object, so that is_registered / unregister find it

    def busy(self) -> bool:
        """True while a task runs (or its last events have not been delivered yet)."""
        return self.task is not None

    def start(self, work: Callable[[BackgroundTask], Any], *, follow: bool = True) -> BackgroundTask:
        """Start ``work`` in a new task; with ``follow``, register the timer (persistent: it survives
        File > Open). Raises RuntimeError when a task of this slot runs."""
        if self.task is not None:
            raise RuntimeError(f"{self.name}: a task is already running")
        self.task = BackgroundTask(work, name=self.name).start()
        if follow:
            import bpy

            if not bpy.app.timers.is_registered(self.timer):
                bpy.app.timers.register(self.timer, first_interval=self.interval_s, persistent=True)
        return self.task

    def cancel(self) -> None:
        """Ask the running task to stop; its :class:`Cancelled` (or other terminal) event follows."""
        if self.task is not None:
            self.task.cancel()

    def deliver(self) -> bool:
        """Hand the queued events to ``on_event`` (and ``on_end`` after the terminal one). Returns True when
        the task has ended (the slot is free again)."""
        task = self.task
        if task is None:
            return True
        end: Finished | Failed | Cancelled | None = None
        try:
            for ev in task.drain():
                self.on_event(ev)
                if isinstance(ev, TERMINAL):
                    end = ev
                    break
        except Exception as e:  # never leave the UI stuck in "running"
            task.cancel()
            end = Failed("internal_error", f"internal error while following the job: {e}", e)
        if end is None:
            return False
        self.task = None
        if self.on_end is not None:
            self.on_end(end)
        return True

    def wait(self, timeout: float | None = None) -> bool:
        """Background mode: wait for the task, then deliver its events here. Returns True when it ended."""
        if self.task is not None:
            self.task.join(timeout)
        ended = self.deliver()
        if ended:
            self._unregister()
        return ended

    def stop(self) -> None:
        """Cancel the task and forget it, remove the timer (the add-on is disabled); no more events are
        delivered."""
        self.cancel()
        self.task = None
        self._unregister()

    def _unregister(self) -> None:
        import bpy

        if bpy.app.timers.is_registered(self.timer):
            bpy.app.timers.unregister(self.timer)

    def _timer(self):
        """The timer function: deliver events, redraw; returns the next interval, or None when the task ended."""
        ended = self.deliver()
        _redraw(self.redraw)
        return None if ended else self.interval_s


def _redraw(area_types: tuple[str, ...]) -> None:
    import bpy

    wm = getattr(bpy.context, "window_manager", None)
    for window in (wm.windows if wm is not None else []):
        for area in window.screen.areas:
            if area.type in area_types:
                area.tag_redraw()
