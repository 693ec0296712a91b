"""The Vulkan layer's ring reader (krystal.gpu.vkring) against rings written here with the C layout of
layer/krystal_ring.h: exact counts, losses when the ring laps, torn slots retried, a writer racing
the reader, rings of exited processes dropped, and corrupt files refused with a reason."""

from __future__ import annotations

import mmap
import os
import struct
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from krystal.gpu.drawcalls import DrawCalls, LayerDrawCalls, NoDrawCalls, assign
from krystal.gpu.model import GpuDevice
from krystal.gpu.vkring import (
    FRAME,
    HEADER,
    MAGIC,
    VERSION,
    Frame,
    RingSet,
    parse_name,
    proc_start_ticks,
)

ROOT = Path(__file__).resolve().parent.parent


def header_offsets() -> dict[str, int]:
    """Field offsets of KrystalRingHeader as a C compiler lays them out (no padding anywhere)."""
    return {"magic": 0, "written": 88, "overwritten": 96, "presenting": 104, "start_ticks": 112}


class Writer:
    """The layer's close_frame() in Python: seq odd, fields, seq even, then header.written."""

    def __init__(
        self,
        path: Path,
        *,
        capacity: int = 8,
        pid: int | None = None,
        app: str | None = None,
        start_ticks: int | None = None,
        vendor: int = 0x10005,
        device: int = 0,
    ) -> None:
        app = path.name.split("-", 3)[3] if app is None else app
        self.capacity = capacity
        size = HEADER.size + capacity * FRAME.size
        fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_TRUNC, 0o644)
        os.ftruncate(fd, size)
        self.map = mmap.mmap(fd, size)
        os.close(fd)
        pid = os.getpid() if pid is None else pid
        ticks = proc_start_ticks(pid) or 0 if start_ticks is None else start_ticks
        HEADER.pack_into(
            self.map,
            0,
            0,
            VERSION,
            FRAME.size,
            capacity,
            pid,
            app.encode(),
            0,
            0,
            0,
            ticks,
            vendor,
            device,
            0,
            0,
            0,
        )
        struct.pack_into("<Q", self.map, 0, MAGIC)  # last, as the layer does
        self.written = 0

    def frame(self, draws: int = 7, vertices: int = 72, dispatches: int = 2, **extra: int) -> None:
        n = self.written
        at = HEADER.size + (n % self.capacity) * FRAME.size
        struct.pack_into("<Q", self.map, at, 2 * n + 1)
        fields = dict(
            frame_index=n,
            end_ns=1000 + n,
            frame_time_ns=16_000_000 if n else 0,
            draw_calls=draws,
            indirect_draws=1,
            vertices=vertices,
            indices=36,
            instances=18,
            dispatches=dispatches,
            indirect_dispatches=0,
            workgroups=8,
            graphics_binds=1,
            compute_binds=1,
            submits=1,
        )
        fields.update(extra)
        for i, value in enumerate(fields.values()):  # one field at a time: a racing reader can tear it
            struct.pack_into("<Q", self.map, at + 8 * (i + 1), value)
        struct.pack_into("<Q", self.map, at, 2 * n + 2)
        self.written = n + 1
        struct.pack_into("<Q", self.map, 88, self.written)

    def close(self) -> None:
        self.map.close()


def ring_path(tmp_path: Path, pid: int | None = None, app: str = "app") -> Path:
    return tmp_path / f"krystal-vk-{os.getpid() if pid is None else pid}-{app}"


def test_layout_matches_the_c_header() -> None:
    text = (ROOT / "layer" / "krystal_ring.h").read_text()
    assert "KRYSTAL_RING_MAGIC 0x31304b5659524bULL" in text and f"KRYSTAL_RING_VERSION {VERSION}u" in text
    assert HEADER.size == 152 and FRAME.size == 152
    # the frame's fields in the header's order
    body = text[text.index("typedef struct KrystalFrame") : text.index("} KrystalFrame;")]
    names = [
        line.split()[1].rstrip(";").split("[")[0] for line in body.splitlines()[1:] if "uint64_t" in line
    ]
    assert names[1:-1] == [f.name for f in Frame.__dataclass_fields__.values()]
    assert header_offsets()["written"] == struct.calcsize("<QIIII64s")


def test_frames_read_exactly_once_with_totals(tmp_path: Path) -> None:
    w = Writer(ring_path(tmp_path, app="game"))
    rings = RingSet(str(tmp_path))
    assert rings.poll().apps[0].last is None  # attached before its first frame
    for _ in range(3):
        w.frame()
    app = rings.poll().apps[0]
    assert (app.app, app.pid, app.frames, app.lost, len(app.new)) == ("game", os.getpid(), 3, 0, 3)
    assert app.last == Frame(2, 1002, 16_000_000, 7, 1, 72, 36, 18, 2, 0, 8, 1, 1, 1)
    assert app.last.shader == "graphics" and app.last.frame_time_ms == 16.0
    again = rings.poll().apps[0]
    assert again.new == () and again.last == app.last and again.frames == 3
    w.frame(draws=1, dispatches=5)
    app = rings.poll().apps[0]
    assert [f.frame_index for f in app.new] == [3] and app.last is not None and app.last.shader == "compute"
    rings.close()
    w.close()


def test_a_lapped_ring_counts_what_it_lost(tmp_path: Path) -> None:
    w = Writer(ring_path(tmp_path), capacity=4)
    rings = RingSet(str(tmp_path))
    for _ in range(10):
        w.frame()
    app = rings.poll().apps[0]
    assert [f.frame_index for f in app.new] == [6, 7, 8, 9] and app.lost == 6 and app.frames == 4
    w.frame()
    assert rings.poll().apps[0].lost == 6
    rings.close()


def test_a_slot_being_rewritten_is_lost_not_misread(tmp_path: Path) -> None:
    w = Writer(ring_path(tmp_path), capacity=4)
    rings = RingSet(str(tmp_path))
    for _ in range(4):
        w.frame()
    # the writer is in frame 4, which reuses frame 0's slot, but has not published it yet
    struct.pack_into("<Q", w.map, HEADER.size, 2 * 4 + 1)
    app = rings.poll().apps[0]
    assert [f.frame_index for f in app.new] == [1, 2, 3] and app.lost == 1
    # a slot whose sequence is behind what written promises (a torn or foreign write): retried, lost
    w.frame()
    w.frame()
    struct.pack_into("<Q", w.map, HEADER.size + FRAME.size, 3)  # frame 5's slot
    app = rings.poll().apps[0]
    assert [f.frame_index for f in app.new] == [4] and app.lost == 2
    assert rings.rings[next(iter(rings.rings))].torn > 0
    rings.close()


def test_a_writer_racing_the_reader_never_yields_a_torn_frame(tmp_path: Path) -> None:
    w = Writer(ring_path(tmp_path), capacity=16)
    rings = RingSet(str(tmp_path))
    total = 3000
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can

    def write() -> None:
        for n in range(total):
            w.frame(draws=n, vertices=3 * n, dispatches=n % 5, indices=5 * n)

    t = threading.Thread(target=write)
    seen: list[Frame] = []
    lost = 0
    try:
        t.start()
        while t.is_alive():
            for app in rings.poll().apps:
                seen += app.new
        app = rings.poll().apps[0]
        seen += app.new
        lost = app.lost
    finally:
        t.join()
        sys.setswitchinterval(old)
    for f in seen:  # every field belongs to the same frame
        assert (f.draw_calls, f.vertices, f.indices, f.dispatches) == (
            f.frame_index,
            3 * f.frame_index,
            5 * f.frame_index,
            f.frame_index % 5,
        )
    indices = [f.frame_index for f in seen]
    assert indices == sorted(set(indices))
    assert len(seen) + lost == total
    rings.close()


def test_rings_of_exited_processes_are_dropped_and_removed(tmp_path: Path) -> None:
    child = subprocess.run(["true"], check=True)
    assert child.returncode == 0
    gone = subprocess.Popen(["true"])
    gone.wait()
    dead = ring_path(tmp_path, pid=gone.pid, app="gone")
    Writer(dead, pid=gone.pid, start_ticks=1).frame()
    # our own pid, but the ring's writer started at another time: a reused pid
    reused = ring_path(tmp_path, app="reused")
    Writer(reused, start_ticks=(proc_start_ticks(os.getpid()) or 0) + 1).frame()
    live = ring_path(tmp_path, app="live")
    Writer(live).frame()
    rings = RingSet(str(tmp_path))
    poll = rings.poll()
    assert [a.app for a in poll.apps] == ["live"]
    assert sorted(poll.dropped) == sorted([dead.name, reused.name])
    assert not dead.exists() and not reused.exists() and live.exists()
    # a ring its writer removed is dropped, not an error
    live.unlink()
    poll = rings.poll()
    assert poll.apps == [] and poll.dropped == [live.name] and rings.rings == {}


def test_a_ring_replaced_under_the_same_name_is_read_afresh(tmp_path: Path) -> None:
    path = ring_path(tmp_path)
    w = Writer(path)
    for _ in range(5):
        w.frame()
    rings = RingSet(str(tmp_path))
    assert rings.poll().apps[0].frames == 5
    path.unlink()
    w2 = Writer(path)
    w2.frame(draws=3)
    app = rings.poll().apps[0]
    assert app.frames == 1 and app.last is not None and app.last.draw_calls == 3 and app.lost == 0
    rings.close()


@pytest.mark.parametrize(
    ("patch", "reason"),
    [
        (lambda m: struct.pack_into("<Q", m, 0, 0), "being set up"),
        (lambda m: struct.pack_into("<Q", m, 0, 0x1234), "bad magic"),
        (lambda m: struct.pack_into("<I", m, 8, 9), "ring version 9"),
        (lambda m: struct.pack_into("<I", m, 12, 64), "slot size 64"),
        (lambda m: struct.pack_into("<I", m, 16, 0), "capacity 0"),
        (lambda m: struct.pack_into("<I", m, 16, 1000), "needed for 1000 slots"),
        (lambda m: struct.pack_into("<I", m, 20, 1), "header pid 1 differs"),
    ],
)
def test_bad_rings_are_refused_with_a_reason(tmp_path: Path, patch: object, reason: str) -> None:
    w = Writer(ring_path(tmp_path))
    patch(w.map)  # type: ignore[operator]
    poll = RingSet(str(tmp_path)).poll()
    assert poll.apps == [] and reason in poll.rejected[ring_path(tmp_path).name]


def test_names_and_short_files(tmp_path: Path) -> None:
    assert parse_name("krystal-vk-42-my-game") == (42, "my-game")
    assert parse_name("krystal-vk-x-a") is None and parse_name("other") is None
    (tmp_path / "krystal-vk-abc").write_bytes(b"")
    ring_path(tmp_path, app="short").write_bytes(b"\0" * 10)
    (tmp_path / f"krystal-vk-{os.getpid()}-dir").mkdir()
    poll = RingSet(str(tmp_path)).poll()
    assert "name is not" in poll.rejected["krystal-vk-abc"]
    assert "shorter than the 152-byte header" in poll.rejected[ring_path(tmp_path, app="short").name]
    assert f"krystal-vk-{os.getpid()}-dir" in poll.rejected
    assert RingSet(str(tmp_path / "missing")).poll().apps == []


def test_readers_assign_applications_to_their_device(tmp_path: Path) -> None:
    Writer(ring_path(tmp_path, app="on-b"), vendor=0x10DE, device=0x2204).frame(draws=5)
    Writer(ring_path(tmp_path, app="unknown"), vendor=0, device=0).frame(draws=1)
    reader = LayerDrawCalls(str(tmp_path))
    draws = reader.poll()
    a = GpuDevice("drm", "a", vendor_id=0x1002, device_id=0x73BF)
    b = GpuDevice("nvml", "b", vendor_id=0x10DE, device_id=0x2204)
    got = assign(draws.apps, [a, b])
    assert [[x.app for x in apps] for apps in got] == [["unknown"], ["on-b"]]
    assert assign(draws.apps, []) == []
    assert NoDrawCalls().poll() == DrawCalls()
    reader.close()


_HEAD = st.builds(
    lambda *v: HEADER.pack(MAGIC, *v),
    st.sampled_from([1, 0, 2, 2**32 - 1]),
    st.sampled_from([FRAME.size, 0, 127, 2**31]),
    st.sampled_from([1, 4, 0, 2**20, 2**32 - 1]),
    st.just(os.getpid()),
    st.binary(max_size=64),
    st.integers(0, 2**64 - 1),
    st.integers(0, 2**64 - 1),
    st.integers(0, 2**64 - 1),
    st.just(0),
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1),
    st.just(0),
    st.just(0),
    st.just(0),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    head=st.one_of(_HEAD, st.binary(max_size=200)), body=st.binary(max_size=1200), cut=st.integers(0, 2000)
)
def test_fuzzed_ring_files_never_crash_the_reader(tmp_path: Path, head: bytes, body: bytes, cut: int) -> None:
    path = ring_path(tmp_path, app="fuzz")
    path.write_bytes((head + body)[:cut] if cut < len(head) + len(body) else head + body)
    rings = RingSet(str(tmp_path))
    for _ in range(2):
        poll = rings.poll()
        if path.name in poll.rejected:
            assert poll.rejected[path.name] and poll.apps == []
        else:
            assert [a.app for a in poll.apps] == [
                (head[24:88].split(b"\0")[0].decode("utf-8", "replace") or "vulkan-app")
            ]
            assert len(poll.apps[0].new) <= rings.rings[path.name].capacity
    rings.close()
    path.unlink()
