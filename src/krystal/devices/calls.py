"""Driver calls off the caller's thread, bounded by a timeout; a call that hangs is abandoned."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class CallTimeout(TimeoutError):
    """The driver call did not return in time; its thread was abandoned."""


class Worker:
    """One daemon thread running driver calls in order. After a timeout the stuck thread is left
    behind (it cannot be killed) and the next call gets a fresh one, so one hang never blocks the
    agent twice."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], queue.SimpleQueue[Any]] | None] | None = None
        self.abandoned = 0

    def _start(self) -> queue.SimpleQueue[Any]:
        jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        threading.Thread(target=self._run, args=(jobs,), name=self._name, daemon=True).start()
        self._jobs = jobs
        return jobs

    @staticmethod
    def _run(jobs: queue.SimpleQueue[Any]) -> None:
        while True:
            job = jobs.get()
            if job is None:
                return
            fn, reply = job
            try:
                reply.put((True, fn()))
            except BaseException as exc:  # everything goes back to the caller
                reply.put((False, exc))

    def call(self, fn: Callable[[], T], timeout_s: float) -> T:
        """fn() on the worker thread; its exception re-raised here; CallTimeout after timeout_s."""
        jobs = self._jobs or self._start()
        reply: queue.SimpleQueue[Any] = queue.SimpleQueue()
        jobs.put((fn, reply))
        try:
            ok, value = reply.get(timeout=timeout_s)
        except queue.Empty:
            jobs.put(None)  # the stuck thread exits if its call ever returns
            self._jobs = None
            self.abandoned += 1
            raise CallTimeout(f"driver call did not return within {timeout_s:g} s (abandoned)") from None
        if ok:
            return value  # type: ignore[no-any-return]
        raise value

    def stop(self) -> None:
        if self._jobs is not None:
            self._jobs.put(None)
            self._jobs = None
