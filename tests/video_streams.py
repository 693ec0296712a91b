"""Stand-ins for a camera and an IP camera made of real pipes, files and sockets (no mocks).

FifoCamera: a named pipe that plays a real MJPG AVI file in real time, the way a camera's device node
delivers frames; unplug() closes and removes it. MjpegServer: multipart/x-mixed-replace MJPEG over
HTTP on 127.0.0.1, as IP cameras serve it; stop() cuts every connection.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import cv2
import numpy as np


def write_video(path: Path, frames: int = 12, size: tuple[int, int] = (160, 120), fps: float = 30.0) -> Path:
    """An MJPG AVI whose frame i is uniformly grey at level 20 * i (decodable by any OpenCV build)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, size)
    assert writer.isOpened()
    for i in range(frames):
        writer.write(np.full((size[1], size[0], 3), (20 * i) % 256, np.uint8))
    writer.release()
    return path


class FifoCamera:
    """A FIFO at `path` streaming `frames` frames of an MJPG AVI at `fps`, to one reader at a time."""

    def __init__(self, path: Path, frames: int = 900, fps: float = 30.0) -> None:
        self.path, self.fps = path, fps
        video = write_video(path.with_suffix(".src.avi"), frames=frames, fps=fps)
        self._data = video.read_bytes()
        self._header = self._data.index(b"movi") + 4  # sent at once: the reader probes it
        self._chunk = max(1, (len(self._data) - self._header) // frames)  # about one frame
        self._stop = threading.Event()
        self._held = threading.Event()
        self._thread: threading.Thread | None = None

    def plug(self) -> None:
        os.mkfifo(self.path)
        self._stop.clear()
        self._held.clear()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def hold(self) -> None:
        """Keep the pipe open but write nothing: a camera that hangs."""
        self._held.set()

    def unplug(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):  # wake a writer still waiting in open() for a reader
            os.close(os.open(self.path, os.O_RDONLY | os.O_NONBLOCK))
        if self._thread is not None:
            self._thread.join(10)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def _serve(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(BrokenPipeError), open(self.path, "wb", buffering=0) as pipe:
                self._play(pipe)

    def _play(self, pipe: Any) -> None:
        pipe.write(self._data[: self._header])
        offset = self._header
        while not self._stop.is_set() and offset < len(self._data):
            if not self._held.is_set():
                pipe.write(self._data[offset : offset + self._chunk])
                offset += self._chunk
            time.sleep(1.0 / self.fps)
        while not self._stop.is_set():  # the file is over: a camera would not end, so hang
            time.sleep(0.05)


def jpeg_frame(index: int, size: tuple[int, int] = (160, 120)) -> bytes:
    """Frame `index`: uniformly grey at level 10 * index (mod 256)."""
    ok, data = cv2.imencode(".jpg", np.full((size[1], size[0], 3), (10 * index) % 256, np.uint8))
    assert ok
    return data.tobytes()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: MjpegServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client gone mid-frame is what these tests do on purpose


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        owner = self.server.owner
        owner.connected(self.connection)
        time.sleep(owner.answer_delay_s)  # a slow camera or a far server: the open takes this long
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.end_headers()
        index = 0
        with contextlib.suppress(OSError):
            while owner.serving(self.server):
                if owner.may_send():
                    data = jpeg_frame(index)
                    head = f"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n\r\n"
                    self.wfile.write(head.encode() + data + b"\r\n")
                    index += 1
                time.sleep(1.0 / owner.fps)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class MjpegServer:
    """MJPEG over HTTP at url; stop() cuts the stream, start() serves again on the same port.

    hold() keeps connections open and sends nothing (a stalled stream); step() then sends one frame.
    """

    def __init__(self, fps: float = 30.0, answer_delay_s: float = 0.0) -> None:
        self.fps, self.answer_delay_s = fps, answer_delay_s
        self.port = 0
        self._server: _Server | None = None
        self._lock = threading.Lock()
        self._connections: list[socket.socket] = []
        self._held = False
        self._steps = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream.mjpg"

    def start(self) -> None:
        server = _Server(("127.0.0.1", self.port), _Handler)  # port 0 the first time: ephemeral
        server.owner = self
        self.port = server.server_address[1]
        self._held, self._steps = False, 0
        self._server = server
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with self._lock:
            connections, self._connections = self._connections, []
        for c in connections:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)

    def hold(self) -> None:
        with self._lock:
            self._held = True

    def step(self) -> None:
        with self._lock:
            self._steps += 1

    def connected(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.append(connection)

    def serving(self, server: _Server) -> bool:
        return server is self._server

    def may_send(self) -> bool:
        with self._lock:
            if not self._held:
                return True
            if self._steps:
                self._steps -= 1
                return True
            return False
