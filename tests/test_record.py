"""krystal record / play: MCAP with ROS 2 message definitions, read back by an independent reader
(rosbags), and played back (the CLI, as a user runs it) equal to what was published, on time."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from hypothesis import given, settings
from hypothesis import strategies as st
from krystal.msg import AsciiFrame, AudioFeatures, StyleDecision
from rosbags.highlevel import AnyReader
from rosbags.typesys import get_types_from_msg

from krystal.record.mcapio import RecordingError, qos_from_metadata, qos_metadata, read_mcap
from krystal.record.msgdefs import message_definition
from krystal.record.node import RecorderNode
from krystal.ros.qos import latched_qos, reliable_qos, sensor_qos
from tests.conftest import PYTHON, scaled, spin_until, wait_until

TOPICS = ("krystal/style", "audio/features", "/diagnostics_test")


def _messages() -> list[tuple[str, object]]:
    out: list[tuple[str, object]] = []
    for i in range(6):
        out.append(
            ("krystal/style", StyleDecision(decision_id=i, mode="edges", reason=f"r{i}", budget_ms=33.0))
        )
        out.append(("audio/features", AudioFeatures(tempo_bpm=100.0 + i, band_energy_db=[1.0 * i, -2.5])))
    out.append(
        (
            "/diagnostics_test",
            DiagnosticArray(status=[DiagnosticStatus(name="x", values=[KeyValue(key="k", value="v")])]),
        )
    )
    return out


def test_definitions_are_complete_and_parse_with_rosbags() -> None:
    text = message_definition("diagnostic_msgs/msg/DiagnosticArray")
    names = [line for line in text.splitlines() if line.startswith("MSG: ")]
    assert names == [
        "MSG: std_msgs/Header",
        "MSG: builtin_interfaces/Time",
        "MSG: diagnostic_msgs/DiagnosticStatus",
        "MSG: diagnostic_msgs/KeyValue",
    ]
    assert text.count("=" * 80) == 4
    types = get_types_from_msg(text.split("=" * 80)[0], "diagnostic_msgs/msg/DiagnosticArray")
    assert "diagnostic_msgs/msg/DiagnosticArray" in types


def test_record_then_read_with_rosbags_then_play_with_the_cli(ros, procs, tmp_path: Path) -> None:
    path = tmp_path / "run.mcap"
    talker = rclpy.create_node("talker")
    pubs = {
        "krystal/style": talker.create_publisher(StyleDecision, "krystal/style", latched_qos(10)),
        "audio/features": talker.create_publisher(AudioFeatures, "audio/features", sensor_qos(10)),
        "/diagnostics_test": talker.create_publisher(DiagnosticArray, "/diagnostics_test", reliable_qos()),
    }
    recorder = RecorderNode(path)  # all topics
    nodes = [talker, recorder]
    assert spin_until(nodes, lambda: all(p.get_subscription_count() for p in pubs.values()), scaled(10.0))
    sent = _messages()
    for topic, msg in sent:
        pubs[topic].publish(msg)
        spin_until(nodes, lambda: False, 0.05)  # 50 ms apart: the timing to reproduce
    assert spin_until(nodes, lambda: recorder.recorder.count >= len(sent), scaled(5.0))
    recorder.destroy_node()

    with AnyReader([path]) as reader:  # independent reader, definitions from the file only
        got = [
            (c.topic, reader.deserialize(raw, c.msgtype), t)
            for c, t, raw in reader.messages(
                connections=[c for c in reader.connections if c.topic != "/rosout"]
            )
        ]
        types = {c.topic: c.msgtype for c in reader.connections}
    assert types["/krystal/style"] == "krystal/msg/StyleDecision"
    recorded = [(t, m) for t, m, _ in got if t in {"/krystal/style", "/audio/features", "/diagnostics_test"}]
    assert len(recorded) == len(sent)

    def by_topic(messages: list[tuple[str, object]]) -> list[tuple[str, object]]:
        # in order on each topic; across topics the recorder's receive order, which load may swap
        return sorted(((("/" + t.lstrip("/")), m) for t, m in messages), key=lambda tm: tm[0])

    for (topic, msg), (rtopic, rmsg) in zip(by_topic(sent), by_topic(recorded), strict=True):
        assert rtopic == topic
        if isinstance(msg, StyleDecision):
            assert (rmsg.decision_id, rmsg.mode, rmsg.reason) == (msg.decision_id, msg.mode, msg.reason)
        elif isinstance(msg, AudioFeatures):
            assert rmsg.tempo_bpm == msg.tempo_bpm and list(rmsg.band_energy_db) == list(msg.band_energy_db)
        else:
            assert rmsg.status[0].values[0].key == "k"
    from mcap.reader import make_reader  # mcap's own ROS 2 decoder agrees
    from mcap_ros2.decoder import DecoderFactory

    with open(path, "rb") as f:
        decoded = make_reader(f, decoder_factories=[DecoderFactory()]).iter_decoded_messages(
            topics=["/krystal/style"]
        )
        assert [m.decision_id for _, _, _, m in decoded] == list(range(6))
    style_qos = next(r.qos for r in read_mcap(path) if r.topic == "/krystal/style")
    assert qos_from_metadata(style_qos)[:2] == ("reliable", "transient_local")

    listener = rclpy.create_node("listener")
    played: list[object] = []
    listener.create_subscription(StyleDecision, "krystal/style", played.append, reliable_qos(50))
    listener.create_subscription(AudioFeatures, "audio/features", played.append, sensor_qos(50))
    listener.create_subscription(DiagnosticArray, "/diagnostics_test", played.append, reliable_qos(50))
    proc = procs([PYTHON, "-m", "krystal.cli", "play", str(path), "--rate", "2", "--wait-s", "5",
                  "--topics", "/krystal/style", "/audio/features", "/diagnostics_test"])  # fmt: skip
    ok = spin_until([listener], lambda: len(played) >= len(sent), scaled(20.0))
    assert ok, (len(played), proc.popen.poll())
    # byte-exact round trip: equal messages, in order on each topic (DDS orders per writer; when a
    # loaded listener wakes to several topics at once, its executor takes them in its own order)
    for kind in (StyleDecision, AudioFeatures, DiagnosticArray):
        assert [m for m in played if isinstance(m, kind)] == [m for _, m in sent if isinstance(m, kind)]
    assert len(played) == len(sent)
    listener.destroy_node()
    talker.destroy_node()
    # The timing rule (docs/record.md), as the player reports it: every message at or after its due
    # time on a timeline of the recorded span / rate; after a stall, catch-up (no shift). The
    # arrival span at a listener is not the rule: a loaded machine delays and bunches deliveries.
    out, err = proc.popen.communicate(timeout=scaled(10.0))
    assert proc.popen.returncode == 0, err
    report = re.search(
        r"catch-up at rate 2: (\d+) messages over ([\d.]+) s of timeline \(shifted ([\d.]+) s\), "
        r"late (-?[\d.]+)-([\d.]+) s",
        out,
    )
    assert report, out
    messages, due_span_s, shifted_s, late_min_s = (float(g) for g in report.groups()[:4])
    times = [t for topic, _, t in got if topic in {"/krystal/style", "/audio/features", "/diagnostics_test"}]
    recorded_span_s = (max(times) - min(times)) / 1e9
    assert messages == len(sent)
    assert due_span_s == pytest.approx(recorded_span_s / 2, abs=0.002)  # rate 2, printed to 1 ms
    assert shifted_s == 0.0 and late_min_s >= 0.0


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_fuzz_the_reader_on_damaged_files(tmp_path_factory, data) -> None:
    base = getattr(test_fuzz_the_reader_on_damaged_files, "_file", None)
    if base is None:
        from krystal.record.mcapio import McapRecorder

        p = tmp_path_factory.mktemp("m") / "a.mcap"
        rec = McapRecorder(p)
        rec.add_topic("/s", "krystal/msg/StyleDecision", qos_metadata("reliable", "volatile", 10))
        for i in range(5):
            rec.write("/s", bytes([0, 1, 0, 0]) + bytes(range(i + 1)), i * 1000)
        rec.close()
        base = p.read_bytes()
        test_fuzz_the_reader_on_damaged_files._file = base  # type: ignore[attr-defined]
    cut = data.draw(st.integers(0, len(base)))
    flip = data.draw(st.lists(st.tuples(st.integers(0, len(base) - 1), st.integers(0, 255)), max_size=4))
    damaged = bytearray(base[:cut])
    for at, value in flip:
        if at < len(damaged):
            damaged[at] = value
    path = tmp_path_factory.mktemp("d") / "d.mcap"
    path.write_bytes(bytes(damaged))
    try:
        for r in read_mcap(path):
            assert isinstance(r.data, bytes)
    except RecordingError:
        pass
    assert qos_from_metadata(data.draw(st.text(max_size=50)))[0] in ("reliable", "best_effort")


def _frame(i: int, stamp_ns: int) -> AsciiFrame:
    msg = AsciiFrame(columns=120, rows=45, mode="edges", kernel="luminance", kernel_size=5)
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 10**9)
    msg.render_time_ms = 5.0 + (i % 7)
    return msg


def test_a_sigkilled_recording_plays_harvests_and_checks(ros, procs, tmp_path: Path) -> None:
    """`krystal record` killed with SIGKILL leaves an MCAP without a summary (the seeking reader
    refuses it); play, harvest and check read it up to where it is cut and say so."""
    import io
    import os
    import signal
    from contextlib import redirect_stderr, redirect_stdout

    from mcap.reader import make_reader

    from krystal.cli import main
    from krystal.record.mcapio import ReadNotes, iter_messages

    path = tmp_path / "killed.mcap"
    talker = rclpy.create_node("talker")
    pub = talker.create_publisher(AsciiFrame, "krystal/ascii", reliable_qos(200))
    rec = procs([PYTHON, "-m", "krystal.cli", "record", "krystal/ascii", "-o", str(path)])
    assert spin_until([talker], lambda: pub.get_subscription_count() > 0, scaled(20.0)), rec.popen.poll()
    n = 150
    t0 = time.time_ns()
    for i in range(n):
        pub.publish(_frame(i, t0 + i * 33_000_000))
        spin_until([talker], lambda: False, 0.005)

    def flushed() -> int:
        notes = ReadNotes()
        try:
            return sum(1 for _ in iter_messages(path, notes=notes))
        except RecordingError:
            return 0

    assert spin_until([talker], lambda: flushed() >= n, scaled(15.0)), (
        flushed()
    )  # on disk within flush_period_s
    os.killpg(rec.popen.pid, signal.SIGKILL)
    rec.popen.wait(10)
    assert rec.popen.returncode == -signal.SIGKILL
    with open(path, "rb") as f, pytest.raises(Exception):  # noqa: B017  (mcap raises its own kinds)
        make_reader(f).get_summary()  # no footer: what play and harvest relied on before

    listener = rclpy.create_node("listener")
    got: list[AsciiFrame] = []
    listener.create_subscription(AsciiFrame, "krystal/ascii", got.append, reliable_qos(200))
    play = procs([PYTHON, "-m", "krystal.cli", "play", str(path), "--rate", "4", "--wait-s", "5"])
    assert spin_until([listener], lambda: len(got) >= n, scaled(30.0)), (len(got), play.popen.poll())
    _, play_err = play.popen.communicate(timeout=scaled(20.0))
    assert play.popen.returncode == 0 and "summary missing" in play_err, play_err
    assert [m.render_time_ms for m in got] == [_frame(i, 0).render_time_ms for i in range(n)]

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["harvest", str(path), "-o", str(tmp_path / "ds" / "ds"), "--window", "16"])
    assert code == 0 and "frames)" in out.getvalue(), out.getvalue() + err.getvalue()
    assert "recording without a summary" in out.getvalue()
    assert int(out.getvalue().split("krystal harvest: ")[1].split(" samples")[0]) > 0

    specs = tmp_path / "specs.txt"
    specs.write_text("fast: always (krystal/ascii.render_time_ms < 12)\n")
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["check", str(specs), str(path)])
    assert code == 0 and f"({n} samples)" in out.getvalue(), out.getvalue() + err.getvalue()
    assert "summary missing" in err.getvalue()
    talker.destroy_node()
    listener.destroy_node()


def test_record_with_no_matching_topic_exits_nonzero(procs, tmp_path: Path) -> None:
    rec = procs([PYTHON, "-m", "krystal.cli", "record", "no/such/topic", "-o", str(tmp_path / "x.mcap"),
                 "--duration", "1.5"])  # fmt: skip
    _, err = rec.popen.communicate(timeout=scaled(30.0))
    assert rec.popen.returncode != 0 and "nothing recorded" in err, err


def test_record_to_a_file_it_cannot_open_says_why(tmp_path: Path) -> None:
    import subprocess

    blocker = tmp_path / "a-file"
    blocker.write_text("")

    done = subprocess.run(
        [PYTHON, "-m", "krystal.cli", "record", "x", "-o", str(blocker / "run.mcap")],
        capture_output=True,
        text=True,
        timeout=scaled(30),
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert f"cannot write {blocker / 'run.mcap'}" in done.stderr and "Traceback" not in done.stderr, (
        done.stderr
    )


@pytest.mark.parametrize(
    "hang, status, said",
    [
        # a teardown that hangs after play's work (seen: last lines printed, alive 30 s later) ends
        # after the bound with the stacks on stderr and the status play had
        ("import time; time.sleep(60)", 3, "shutdown took over 0.3 s"),
        # one stuck in C code holding the GIL (a backtracking regex) starves the timer's thread: the
        # GIL-free watchdog still ends it, with the stacks and status 1 (it hung on)
        ("import re; re.match(r'(a+)+$', 'a' * 64 + 'b')", 1, "in match"),
    ],
    ids=["sleeping", "holding-the-gil"],
)
def test_play_exit_is_bounded_when_teardown_hangs(hang: str, status: int, said: str) -> None:
    import subprocess

    code = f"from krystal.cli import _bounded_exit; _bounded_exit('krystal play', 0.3, 3); {hang}"
    done = subprocess.run(
        [PYTHON, "-c", code], capture_output=True, text=True, timeout=scaled(30.0), check=False
    )
    assert done.returncode == status, done.stderr
    assert said in done.stderr and "most recent call first" in done.stderr


_STALLED_LISTENER = """
import sys, rclpy
from krystal.msg import AsciiFrame
from rclpy.qos import HistoryPolicy
from krystal.ros.qos import reliable_qos
qos = reliable_qos(1)
qos.history = HistoryPolicy.KEEP_ALL  # flow control: what it has not taken it does not acknowledge
rclpy.init()
node = rclpy.create_node("stalled_listener")
out = open(sys.argv[1], "a", buffering=1)
node.create_subscription(AsciiFrame, "stall_test/frames", lambda m: out.write(f"{m.kernel_size}\\n"),
                         qos)
try:
    rclpy.spin(node)
except KeyboardInterrupt:
    pass
"""


def _stall_recording(folder: Path, n: int, period_ns: int, lines: int) -> Path:
    """A reliable topic of `n` AsciiFrames `period_ns` apart, kernel_size = index % 256."""
    from rclpy.serialization import serialize_message

    from krystal.record.mcapio import McapRecorder

    path = folder / "stall.mcap"
    rec = McapRecorder(path)
    rec.add_topic("/stall_test/frames", "krystal/msg/AsciiFrame", qos_metadata("reliable", "volatile", 10))
    for i in range(n):
        msg = _frame(i, 0)
        msg.kernel_size = i % 256
        msg.lines = [f"{i:05d}" * 80] * lines
        rec.write("/stall_test/frames", serialize_message(msg), i * period_ns)
    rec.close()
    return path


@pytest.mark.parametrize(
    "case",  # (messages, period_ns, lines of 400 characters, --max-unacked-mb)
    [
        (120, 25_000_000, 100, 64.0),  # ~40 KB each: a stalled reader's socket and SHM buffers overflow
        (6000, 200_000, 1, 64.0),  # more unacknowledged than a writer's history holds (5000): publish fails
        (120, 25_000_000, 100, 1.0),  # more unacknowledged bytes than the player may hold
    ],
    ids=["big-messages", "many-messages", "byte-bound"],
)
def test_play_delivers_every_reliable_message_to_a_listener_that_stalled(
    procs, tmp_path: Path, case: tuple[int, int, int, float]
) -> None:
    """A reliable subscriber that stops for a while (SIGSTOP: a loaded machine, a debugger) gets every
    message once it runs again: the player keeps what is unacknowledged instead of the recorded
    depth's last few (KEEP_LAST 10 lost 71 of 120), and waits when its history is full (play crashed)
    or holds --max-unacked-mb (it held all of it)."""
    import os
    import signal

    n, period_ns, lines, max_unacked_mb = case
    waits = n > 5000 or n * lines * 400 > max_unacked_mb * 2**20
    path = _stall_recording(tmp_path, n, period_ns, lines)
    seen = tmp_path / "seen.txt"
    seen.touch()
    listener = procs([PYTHON, "-c", _STALLED_LISTENER, str(seen)])

    def got() -> list[int]:
        return [int(x) for x in seen.read_text().split()]

    log = tmp_path / "play.err"
    with log.open("w") as err_file:
        args = ["play", str(path), "--wait-s", "30", "--max-unacked-mb", f"{max_unacked_mb:g}"]
        play = procs([PYTHON, "-m", "krystal.cli", *args], stderr=err_file)
    assert wait_until(lambda: len(got()) > 0, 30.0), (play.popen.poll(), listener.popen.poll())
    os.kill(listener.popen.pid, signal.SIGSTOP)
    try:
        if waits:  # stalled until the player's history or byte bound is full and it says it waits
            waited = wait_until(lambda: "waiting for them" in log.read_text(), 30.0)
        else:  # 2 s of a 3 s play: ~80 frames
            time.sleep(2.0)
        stalled_at = len(got())
    finally:
        os.kill(listener.popen.pid, signal.SIGCONT)
    assert stalled_at < n // 2, stalled_at  # the stall overlapped the playback
    assert wait_until(lambda: len(got()) >= n, 20.0), (len(got()), play.popen.poll())
    play.popen.wait(scaled(40.0))
    assert play.popen.returncode == 0, log.read_text()
    assert got() == [i % 256 for i in range(n)]
    if waits:
        assert waited, log.read_text()


def test_play_fails_when_a_subscriber_never_acknowledged(procs, tmp_path: Path) -> None:
    """A reliable subscriber still stopped --wait-s after the last publish: play cannot deliver the
    rest, so it says so and exits 1 instead of 0 (it used to exit 0)."""
    import os
    import signal

    path = _stall_recording(tmp_path, 40, 10_000_000, 1)
    seen = tmp_path / "seen.txt"
    seen.touch()
    listener = procs([PYTHON, "-c", _STALLED_LISTENER, str(seen)])
    wait_s = scaled(4.0)  # for the subscriber, then for its acknowledgements
    play = procs([PYTHON, "-m", "krystal.cli", "play", str(path), "--wait-s", f"{wait_s:g}"])
    assert wait_until(lambda: seen.read_text() != "", 30.0), (play.popen.poll(), listener.popen.poll())
    os.kill(listener.popen.pid, signal.SIGSTOP)
    try:
        _, err = play.popen.communicate(timeout=wait_s + scaled(20.0))
    finally:
        os.kill(listener.popen.pid, signal.SIGCONT)
    assert play.popen.returncode == 1, err
    assert f"had not acknowledged every reliable message {wait_s:g} s after the last publish" in err, err


def test_play_raises_a_publish_failure_that_waiting_does_not_mend(ros, tmp_path: Path) -> None:
    """A full KEEP_ALL history is waited out (above); a publish that still fails once everything is
    acknowledged is another fault, and play raises it instead of waiting for ever."""
    import threading

    from rclpy._rclpy_pybind11 import RCLError

    from krystal.record.node import Player

    node = rclpy.create_node("failing_player")
    player = Player(node, _stall_recording(tmp_path, 3, 1_000_000, 1))
    real = player.publishers["/stall_test/frames"]
    calls: list[int] = []

    class Refusing:  # the real writer (it answers wait_for_all_acked) whose publish always fails
        def publish(self, data: bytes) -> None:
            calls.append(len(data))
            raise RCLError("failed to publish serialized message")

        def wait_for_all_acked(self, timeout):
            return real.wait_for_all_acked(timeout)

    player.publishers["/stall_test/frames"] = Refusing()
    raised: list[BaseException] = []
    stop = threading.Event()

    def run() -> None:
        try:
            player.play(stop=stop)
        except RCLError as e:
            raised.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(scaled(5.0))
    stop.set()  # the unmended loop: retried for ever
    thread.join(scaled(5.0))
    node.destroy_node()
    assert raised, f"publish retried {len(calls)} times and play never raised"
    assert 1 < len(calls) <= 4 and player.published == 0
