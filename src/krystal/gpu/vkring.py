"""Reader of the Krystal Vulkan layer's shared-memory rings (layer/krystal_ring.h). ROS-free.

One ring per process, `/dev/shm/krystal-vk-<pid>-<app>`, written by one thread of that process and
read here without locks: each slot is a seqlock (odd while written, `2 * (frame + 1)` when done), so
a read that saw the sequence change while copying is retried, and a slot overwritten before it was
read is counted as lost. Rings of processes that exited (the pid is gone, or now belongs to a later
process: its start time differs) are dropped and their files removed.
"""

from __future__ import annotations

import contextlib
import math
import mmap
import os
import stat
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

MAGIC = 0x31304B5659524B  # "KRYVK01"
VERSION = 2  # 2: mesh_draws, trace_rays, rays
PREFIX = "krystal-vk-"
SHM_DIR = "/dev/shm"
NAME_LEN = 64
HEADER = struct.Struct(f"<QIIII{NAME_LEN}sQQQQII3Q")
FRAME_FIELDS = (
    "seq",
    "frame_index",
    "end_ns",
    "frame_time_ns",
    "draw_calls",
    "indirect_draws",
    "vertices",
    "indices",
    "instances",
    "dispatches",
    "indirect_dispatches",
    "workgroups",
    "graphics_binds",
    "compute_binds",
    "submits",
    "mesh_draws",
    "trace_rays",
    "rays",
    "reserved",
)
FRAME = struct.Struct(f"<{len(FRAME_FIELDS)}Q")
SEQ = struct.Struct("<Q")
WRITTEN_AT = struct.calcsize(f"<QIIII{NAME_LEN}s")  # offset of header.written
MAX_CAPACITY = 1 << 20  # anything larger is a corrupt header, not a ring
RETRIES = 8  # torn reads of one slot before it counts as lost


def dominant_kind(draw_calls: int, mesh_draws: int, dispatches: int, trace_rays: int) -> str:
    """The kind with the most calls (draws other than mesh-task ones are "graphics"); on a tie the
    earlier of graphics, mesh, compute, ray_tracing; "" when there are none."""
    kinds = (
        ("graphics", draw_calls - mesh_draws),
        ("mesh", mesh_draws),
        ("compute", dispatches),
        ("ray_tracing", trace_rays),
    )
    name, count = max(kinds, key=lambda kind: kind[1])  # max keeps the first of equals
    return name if count > 0 else ""


@dataclass(frozen=True)
class Frame:
    """One frame's counts as the layer wrote them (krystal_ring.h's KrystalFrame)."""

    frame_index: int
    end_ns: int  # CLOCK_MONOTONIC of the present or submit that closed it
    frame_time_ns: int  # since the previous frame; 0 for the first
    draw_calls: int  # every vkCmdDraw*, indirect, mesh-task and byte-count ones included
    indirect_draws: int  # of which indirect: vertex and index counts unknown (on the GPU)
    vertices: int  # vertexCount * instanceCount of direct non-indexed draws
    indices: int  # indexCount * instanceCount of direct indexed draws
    instances: int
    dispatches: int
    indirect_dispatches: int
    workgroups: int  # x*y*z of direct dispatches
    graphics_binds: int
    compute_binds: int
    submits: int
    mesh_draws: int = 0  # of draw_calls: vkCmdDrawMeshTasks* (EXT, NV, indirect)
    trace_rays: int = 0  # vkCmdTraceRays* (KHR, NV, indirect): neither draws nor dispatches
    rays: int = 0  # width*height*depth of direct trace-rays calls

    @property
    def shader(self) -> str:
        """Dominant kind of work: "graphics", "mesh", "compute", "ray_tracing", or "" for none."""
        return dominant_kind(self.draw_calls, self.mesh_draws, self.dispatches, self.trace_rays)

    @property
    def frame_time_ms(self) -> float:
        return self.frame_time_ns / 1e6 if self.frame_time_ns else math.nan


class RingError(ValueError):
    """A file that is not (or no longer) a readable ring; the message says why."""


def proc_start_ticks(pid: int, proc: str = "/proc") -> int | None:
    """Field 22 of /proc/<pid>/stat (start time after boot, clock ticks); None when no such process
    (a zombie included: it has exited, only its parent has not reaped it yet)."""
    try:
        text = Path(proc, str(pid), "stat").read_bytes().decode("ascii", "replace")
    except OSError:
        return None
    rest = text[text.rfind(")") + 2 :].split()  # the command name may hold spaces and ')'
    try:
        return None if rest[0] == "Z" else int(rest[19])  # rest[0] is field 3, the state
    except (IndexError, ValueError):
        return None


def parse_name(name: str) -> tuple[int, str] | None:
    """`krystal-vk-<pid>-<app>` as (pid, app); None for any other name."""
    if not name.startswith(PREFIX):
        return None
    pid_text, _, app = name[len(PREFIX) :].partition("-")
    if not pid_text.isdigit() or not 0 < int(pid_text) < 1 << 32:
        return None
    return int(pid_text), app


class Ring:
    """One process's ring, mapped read-only; `read()` returns the frames written since the last call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise RingError("not a regular file")
            if st.st_size < HEADER.size:
                raise RingError(f"{st.st_size} bytes, shorter than the {HEADER.size}-byte header")
            head = HEADER.unpack(os.pread(fd, HEADER.size, 0))
            magic, version, slot_size, capacity, pid, raw_name = head[:6]
            if magic == 0:
                raise RingError("being set up (no magic yet)")
            if magic != MAGIC:
                raise RingError(f"bad magic 0x{magic:x}")
            if version != VERSION:
                raise RingError(f"ring version {version}, this reader knows {VERSION}")
            if slot_size != FRAME.size:
                raise RingError(f"slot size {slot_size}, expected {FRAME.size}")
            if not 0 < capacity <= MAX_CAPACITY:
                raise RingError(f"capacity {capacity} out of range")
            self.size = HEADER.size + capacity * FRAME.size
            if st.st_size < self.size:
                raise RingError(f"{st.st_size} bytes, {self.size} needed for {capacity} slots")
            self._map = mmap.mmap(fd, self.size, mmap.MAP_SHARED, mmap.PROT_READ)
        finally:
            os.close(fd)
        self.inode = (st.st_dev, st.st_ino)
        self.capacity = capacity
        self.pid = pid
        self.app = raw_name.split(b"\0", 1)[0].decode("utf-8", "replace") or "vulkan-app"
        self.start_ticks = head[9]
        self.next = 0  # next frame index to read
        self.frames = 0  # frames read since attached
        self.lost = 0  # frames overwritten before they were read
        self.torn = 0  # slot reads retried because the writer was in them
        self.last: Frame | None = None

    @property
    def vendor_id(self) -> int:
        return int(HEADER.unpack_from(self._map, 0)[10])

    @property
    def device_id(self) -> int:
        return int(HEADER.unpack_from(self._map, 0)[11])

    @property
    def presenting(self) -> bool:
        return bool(HEADER.unpack_from(self._map, 0)[8])

    def written(self) -> int:
        return int(SEQ.unpack_from(self._map, WRITTEN_AT)[0])

    def _slot(self, n: int) -> Frame | None:
        """Frame n if its slot still holds it, read consistently; None if overwritten meanwhile."""
        at = HEADER.size + (n % self.capacity) * FRAME.size
        done = 2 * n + 2
        for _ in range(RETRIES):
            before = SEQ.unpack_from(self._map, at)[0]
            if before > done:
                return None  # a later frame is in (or being written to) the slot
            values = FRAME.unpack_from(self._map, at)
            after = SEQ.unpack_from(self._map, at)[0]
            if before == after == done and values[0] == done:
                return Frame(*values[1:-1])
            self.torn += 1
        return None

    def read(self) -> list[Frame]:
        """Frames completed since the last call, oldest first (at most one ring's worth)."""
        written = self.written()
        if written < self.next:  # only a foreign write can move it back: start over
            self.next = 0
        oldest = max(self.next, written - self.capacity)
        self.lost += oldest - self.next
        out: list[Frame] = []
        for n in range(oldest, written):
            frame = self._slot(n)
            if frame is None:
                self.lost += 1
            else:
                out.append(frame)
        self.next = written
        self.frames += len(out)
        if out:
            self.last = out[-1]
        return out

    def close(self) -> None:
        self._map.close()


@dataclass(frozen=True)
class AppFrames:
    """One attached application this poll: its latest complete frame and its totals."""

    app: str
    pid: int
    vendor_id: int  # of the device it created last; 0 if none yet
    device_id: int
    presenting: bool  # frames are present to present (else one per submit)
    frames: int  # frames read since attached
    lost: int  # frames overwritten before they were read
    new: tuple[Frame, ...]  # frames completed since the previous poll
    last: Frame | None  # the latest complete frame, None before the first


@dataclass
class Poll:
    apps: list[AppFrames] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)  # rings of processes that exited, this poll
    rejected: dict[str, str] = field(default_factory=dict)  # file name -> why it is not read


class RingSet:
    """Every live ring under `root`: new ones attached, exited ones dropped, on each `poll()`."""

    def __init__(self, root: str = SHM_DIR, proc: str = "/proc", unlink_dead: bool = True) -> None:
        self.root = Path(root)
        self.proc = proc
        self.unlink_dead = unlink_dead
        self.rings: dict[str, Ring] = {}
        self.rejected: dict[str, str] = {}

    def _alive(self, pid: int, start_ticks: int) -> bool:
        now = proc_start_ticks(pid, self.proc)
        return now is not None and start_ticks in (0, now)

    def _names(self) -> Iterator[str]:
        try:
            with os.scandir(self.root) as it:
                for entry in it:
                    if entry.name.startswith(PREFIX):
                        yield entry.name
        except OSError:
            return

    def _drop(self, name: str, ring: Ring, dead: bool) -> None:
        ring.close()
        del self.rings[name]
        if dead and self.unlink_dead:
            try:  # only the file we mapped: a new process may have made one with the same name
                st = os.lstat(ring.path)
                if (st.st_dev, st.st_ino) == ring.inode:
                    os.unlink(ring.path)
            except OSError:
                pass

    def poll(self) -> Poll:
        out = Poll()
        names = set(self._names())
        for name in [n for n in self.rings if n not in names]:  # removed by its writer
            self._drop(name, self.rings[name], dead=False)
            out.dropped.append(name)
        for name in sorted(names):
            ring = self.rings.get(name)
            if ring is not None:
                try:
                    st = os.lstat(ring.path)
                    replaced = (st.st_dev, st.st_ino) != ring.inode
                except OSError:
                    replaced = True
                if replaced:  # a later process of the same pid and name made a new ring
                    self._drop(name, ring, dead=False)
                    ring = None
            if ring is None:
                parsed = parse_name(name)
                if parsed is None:
                    out.rejected[name] = "name is not krystal-vk-<pid>-<app>"
                    continue
                try:
                    ring = Ring(self.root / name)
                except (OSError, ValueError) as exc:
                    out.rejected[name] = str(exc) if isinstance(exc, RingError) else f"{exc!r}"
                    if proc_start_ticks(parsed[0], self.proc) is None and self.unlink_dead:
                        _unlink_quietly(self.root / name)  # a half-made ring of a dead process
                    continue
                if ring.pid != parsed[0]:
                    ring.close()
                    out.rejected[name] = f"header pid {ring.pid} differs from the name's {parsed[0]}"
                    continue
                self.rings[name] = ring
            if not self._alive(ring.pid, ring.start_ticks):
                self._drop(name, ring, dead=True)
                out.dropped.append(name)
                continue
            new = ring.read()
            out.apps.append(
                AppFrames(
                    app=ring.app,
                    pid=ring.pid,
                    vendor_id=ring.vendor_id,
                    device_id=ring.device_id,
                    presenting=ring.presenting,
                    frames=ring.frames,
                    lost=ring.lost,
                    new=tuple(new),
                    last=ring.last,
                )
            )
        self.rejected = out.rejected
        return out

    def close(self) -> None:
        for ring in self.rings.values():
            ring.close()
        self.rings.clear()


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()
