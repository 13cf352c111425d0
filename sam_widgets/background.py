"""Background work of a view, in order: one worker thread (``concurrent.futures``), one job at a time.

A widget sends its long jobs here (encoding an image, "everything") and, while one runs, the
clicks made meanwhile, so that they apply in the order they were made, after the embedding they
need. ``Background(enabled=False)`` runs every job in the call that submits it (scripts, tests).

A job's exception is kept in its future and handed to ``on_error`` (a view shows it); it never
stops the jobs queued behind it.

"hover" jobs (a preview under the pointer) are disposable: only the newest waits (a new one
drops the one still waiting), any other job submitted drops a waiting one, and they count for
neither ``busy`` nor ``wait``: a click is never queued behind a preview.
"""

from __future__ import annotations

import atexit
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Background", "Job"]

_POOLS: weakref.WeakSet[ThreadPoolExecutor] = weakref.WeakSet()


@atexit.register
def _finish_running_jobs() -> None:
    # A worker killed inside torch at interpreter exit aborts the process: let its job finish.
    for pool in list(_POOLS):
        pool.shutdown(wait=True, cancel_futures=True)


@dataclass(eq=False)
class Job:
    """One submitted job: what it is (``label``, ``kind``), its future, when it started (monotonic s)."""

    label: str
    kind: str  # "long" (encoding, everything), "click" (a gesture queued behind a long job), "hover"
    future: Future = field(default_factory=Future)
    started: float | None = None
    data: Any = None  # what a view needs to show the job (e.g. a queued click's point)
    queued: Future | None = None  # the executor's future (cancelled when a hover job is dropped)


class Background:
    """An ordered queue of jobs run by one worker thread.

    Arguments:
      enabled: False runs each job at once in the submitting thread (its future is done on return).
      on_error: called as ``on_error(job, exception)`` in the worker when a job raises.
      on_change: called with no arguments when a job starts or ends (a view updates its status).
    """

    def __init__(
        self,
        enabled: bool = True,
        on_error: Callable[[Job, BaseException], Any] | None = None,
        on_change: Callable[[], Any] | None = None,
    ) -> None:
        self.enabled = bool(enabled)
        self._on_error = on_error
        self._on_change = on_change
        self._lock = threading.Lock()
        self._jobs: list[Job] = []  # submitted, not finished, in order
        self._pool: ThreadPoolExecutor | None = None
        self._worker_ident: int | None = None

    # ------------------------------------------------------------------ submitting

    def submit(self, fn: Callable[[], Any], label: str, kind: str = "long", data: Any = None) -> Job:
        """Queue ``fn`` behind every job submitted before; the ``Job`` (``job.future.result()``)."""
        job = Job(label, kind, data=data)
        self._drop_waiting_hover()
        with self._lock:
            self._jobs.append(job)
        if not self.enabled:
            self._run(job, fn)
            return job
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sam-widgets-background")
            _POOLS.add(self._pool)
        job.queued = self._pool.submit(self._run, job, fn)
        return job

    def _drop_waiting_hover(self) -> None:
        """Cancel the hover jobs that have not started (a newer gesture makes them stale)."""
        with self._lock:
            waiting = [j for j in self._jobs if j.kind == "hover" and j.started is None]
        for job in waiting:
            if job.queued is not None and job.queued.cancel():
                with self._lock:
                    if job in self._jobs:
                        self._jobs.remove(job)
                job.future.cancel()

    def _run(self, job: Job, fn: Callable[[], Any]) -> None:
        self._worker_ident = threading.get_ident()
        job.started = time.monotonic()
        if job.kind != "hover":
            self._changed()
        try:
            job.future.set_result(fn())
        except BaseException as e:  # kept in the future; the queue goes on
            job.future.set_exception(e)
            if self._on_error is not None:
                self._on_error(job, e)
        finally:
            with self._lock:
                self._jobs.remove(job)
            if job.kind != "hover":
                self._changed()

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change()

    # ------------------------------------------------------------------ state

    @property
    def busy(self) -> bool:
        """True while a job (other than a hover preview) runs or waits."""
        return any(j.kind != "hover" for j in self.jobs)

    @property
    def jobs(self) -> list[Job]:
        """The unfinished jobs, the running one first."""
        with self._lock:
            return list(self._jobs)

    @property
    def running(self) -> Job | None:
        """The job running now, or None."""
        jobs = self.jobs
        return jobs[0] if jobs and jobs[0].started is not None else None

    def in_worker(self) -> bool:
        """True when called from the worker thread (a job waiting for itself would never end)."""
        return self.enabled and threading.get_ident() == self._worker_ident

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every job submitted so far has finished; False if ``timeout`` s passed first."""
        if self.in_worker():
            return True
        jobs = [j for j in self.jobs if j.kind != "hover"]
        if not jobs:
            return True
        try:
            jobs[-1].future.exception(timeout)  # jobs finish in order: the last one is the end
        except FutureTimeout:
            return False
        return True

    def shutdown(self) -> None:
        """Stop taking jobs and let the worker end after the queued ones."""
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None
