"""Uploads rendered in worker processes, away from the process that serves HTTP.

Decoding and rendering hold the GIL for much of their time, and under `krystal run` that GIL is
every node's: a render waited for the video, renderer and reasoning callbacks, and they for it.
Workers are spawned (never forked from a process with DDS threads), ignore Ctrl-C (the gateway
stops them), leave when their parent is gone, and keep one engine each. A worker that dies in the
middle of a render (a decoder crash, the OOM killer) costs that request a 503; the pool is made
again for the next.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from krystal.gateway.frames import EnginePool, FrameRequest, Limits, UploadError, encode_answer, process_frame

_ENGINES: list[EnginePool] = []  # in a worker: its engine, made on its first render


def _start_worker(parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group

    def follow() -> None:  # a SIGKILLed gateway cannot stop us
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=follow, name="follow-gateway", daemon=True).start()


def _render(data: bytes, req: FrameRequest, limits: Limits, text: bool) -> bytes:
    if not _ENGINES:
        _ENGINES.append(EnginePool(1))
    return encode_answer(process_frame(data, req, limits, _ENGINES[0]), text)


class RenderProcesses:
    """`size` worker processes, started by the first upload (a second or so: each imports OpenCV
    and NumPy), so a gateway nobody uploads to spends neither memory nor start-up CPU on them."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def _executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    self.size,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_start_worker,
                    initargs=(os.getpid(),),
                )
            return self._pool

    def pids(self) -> list[int]:
        pool = self._pool
        return sorted(p.pid for p in (getattr(pool, "_processes", None) or {}).values() if p.pid)

    async def render(self, data: bytes, req: FrameRequest, limits: Limits, text: bool) -> bytes:
        pool = self._executor()
        try:
            return await asyncio.wrap_future(pool.submit(_render, data, req, limits, text))
        except BrokenProcessPool:
            with self._lock:
                if self._pool is pool:
                    self._pool = None
            pool.shutdown(wait=False, cancel_futures=True)
            raise UploadError(503, "the render worker stopped during this image: try again") from None

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
