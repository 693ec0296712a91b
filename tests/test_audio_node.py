"""audio_source as a real rclpy node: a real PulseAudio server (started here) with a null sink as
the capture device, a click track and a tone played into it with paplay and captured from its
monitor through sounddevice (PortAudio -> ALSA 'pulse' plugin -> the server); the sink removed
and restored; a wrong device name; file and generator sources; bad files and parameters."""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import rclpy
import soundfile
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from krystal.msg import AudioFeatures, AudioPcm
from rclpy.parameter import Parameter

from krystal.audio.generator import Segment, render
from krystal.audio.node import AudioSourceNode
from krystal.ros.qos import reliable_qos, sensor_qos
from tests.conftest import scaled, spin_until

SOURCE = "audio_source: source"
OK, WARN, ERROR = DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR
SINK = "krystal_sink"
RATE = 48000


class Probe:
    def __init__(self) -> None:
        self.node = rclpy.create_node("audio_probe")
        self.features: list[AudioFeatures] = []
        self.pcm: list[AudioPcm] = []
        self.status: dict[str, DiagnosticStatus] = {}
        self.history: list[DiagnosticStatus] = []
        self.node.create_subscription(AudioFeatures, "audio/features", self.features.append, sensor_qos(50))
        self.node.create_subscription(AudioPcm, "audio/pcm", self.pcm.append, sensor_qos(50))
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, reliable_qos())

    def _on_diag(self, msg: DiagnosticArray) -> None:
        for s in msg.status:
            self.status[s.name] = s
            self.history.append(s)

    def level(self) -> bytes | None:
        s = self.status.get(SOURCE)
        return s.level if s else None

    def message(self) -> str:
        s = self.status.get(SOURCE)
        return s.message if s else ""


def _node(**params: object) -> AudioSourceNode:
    overrides = [Parameter(k, value=v) for k, v in params.items()]
    return AudioSourceNode(parameter_overrides=overrides)


class Pulse:
    """A private PulseAudio server: its own runtime dir and socket, a null sink as the device."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.socket = root / "native"
        self.env = {
            **os.environ,
            "HOME": str(root),
            "XDG_RUNTIME_DIR": str(root / "xdg"),
            "PULSE_RUNTIME_PATH": str(root / "run"),
            "PULSE_SERVER": f"unix:{self.socket}",
        }
        for d in ("xdg", "run"):
            (root / d).mkdir(exist_ok=True)
        # as root it warns "not intended to be run as root" but serves; --system is not needed
        self.proc = subprocess.Popen(
            [
                "pulseaudio",
                "--daemonize=no",
                "--exit-idle-time=-1",
                "-n",
                "--use-pid-file=no",
                "--disable-shm=yes",
                "-L",
                f"module-native-protocol-unix socket={self.socket} auth-anonymous=1",
            ],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        deadline = time.monotonic() + 15
        while subprocess.run(["pactl", "info"], env=self.env, capture_output=True, check=False).returncode:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"pulseaudio did not start: {self.proc.stderr.read() if self.proc.stderr else ''}"
                )
            time.sleep(0.1)
        self.players: list[subprocess.Popen[bytes]] = []

    def pactl(self, *args: str) -> str:
        return subprocess.run(
            ["pactl", *args], env=self.env, capture_output=True, text=True, check=True
        ).stdout

    def load_sink(self) -> None:
        self.pactl("load-module", "module-null-sink", f"sink_name={SINK}", f"rate={RATE}", "channels=1")
        self.pactl("set-default-source", f"{SINK}.monitor")

    def unload_sink(self) -> None:
        self.pactl("unload-module", "module-null-sink")

    def play(self, path: Path) -> None:
        self.players.append(subprocess.Popen(["paplay", "-d", SINK, str(path)], env=self.env))

    def stop_players(self) -> None:
        for p in self.players:
            p.terminate()
            p.wait(5)
        self.players.clear()

    def stop(self) -> None:
        self.stop_players()
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def pulse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pulse]:
    if shutil.which("pulseaudio") is None or shutil.which("paplay") is None:
        pytest.skip("pulseaudio/paplay not installed (Debian pulseaudio)")
    server = Pulse(tmp_path_factory.mktemp("pulse"))
    server.load_sink()
    saved = os.environ.get("PULSE_SERVER")
    os.environ["PULSE_SERVER"] = server.env[
        "PULSE_SERVER"
    ]  # libpulse in this process (PortAudio's ALSA plugin)
    try:
        yield server
    finally:
        server.stop()
        if saved is None:
            os.environ.pop("PULSE_SERVER", None)
        else:
            os.environ["PULSE_SERVER"] = saved


def _wav(path: Path, x: np.ndarray, sr: int = RATE) -> Path:
    soundfile.write(path, x, sr, subtype="PCM_16")
    return path


def test_capture_from_pulseaudio_tempo_loudness_and_device_loss(
    ros: None, pulse: Pulse, tmp_path: Path
) -> None:
    import pyloudnorm

    from krystal.audio.sources import input_devices

    names = [name for _, name in input_devices()]
    assert "pulse" in names, f"PortAudio does not see the PulseAudio server (ALSA pulse plugin): {names}"
    # long enough that the 3 s short-term loudness settles well before the tone ends (a window
    # straddling its end has a broadband centroid), even when the node starts late under load
    tone = render("tone", RATE, 30.0, level_dbfs=-20.0, tone_hz=1000.0)
    clicks = render("click", RATE, 14.0, (Segment(0.0, 100.0),), level_dbfs=-10.0)
    pulse.play(_wav(tmp_path / "tone.wav", tone))
    node, probe = _node(source_type="device", source="pulse", sample_rate=RATE, publish_pcm=True), Probe()
    nodes = [node, probe.node]
    try:
        loud = lambda: [f.loudness_lufs for f in probe.features[-5:]]  # noqa: E731
        expected = pyloudnorm.Meter(RATE, block_size=3.0).integrated_loudness(
            tone[: 3 * RATE].astype(np.float64)
        )
        assert spin_until(
            nodes,
            lambda: probe.level() == OK and len(loud()) == 5 and all(abs(v - expected) < 1.0 for v in loud()),
            scaled(15.0),
        ), (probe.message(), loud(), expected)
        f = probe.features[-1]
        # median of five: one window hit by a paplay underrun (a gap, broadband) must not decide it
        centroids = [m.spectral_centroid_hz for m in probe.features[-5:]]
        assert float(np.median(centroids)) == pytest.approx(1000.0, rel=0.05), centroids
        assert probe.pcm and probe.pcm[-1].sample_rate_hz == RATE
        # the index counts samples since the device opened: it rises within an open and restarts at
        # a reopen (a loaded machine can starve paplay past stall_timeout_s; the node then reopens)
        index = [m.first_sample_index for m in probe.features]
        restarts = sum(b <= a for a, b in itertools.pairwise(index))

        def opens() -> int:
            status = probe.status.get(SOURCE)
            return int({kv.key: kv.value for kv in status.values}.get("opens", 0)) if status else 0

        assert spin_until(nodes, lambda: opens() - 1 >= restarts, scaled(3.0)), (restarts, opens(), index)
        assert (
            abs(f.header.stamp.sec + f.header.stamp.nanosec * 1e-9 - time.time()) < 2.0
        )  # capture time, ROS clock
        pulse.stop_players()
        pulse.play(_wav(tmp_path / "clicks.wav", clicks))
        probe.features.clear()

        def tempo_ok() -> bool:
            last = probe.features[-10:]
            return len(last) == 10 and all(abs(m.tempo_bpm - 100.0) <= 2.0 for m in last)

        tempos = lambda: [round(m.tempo_bpm, 1) for m in probe.features[-10:]]  # noqa: E731
        assert spin_until(nodes, tempo_ok, scaled(14.0)), tempos()
        pulse.unload_sink()  # the device vanishes: ERROR, and reopen attempts with backoff
        assert spin_until(nodes, lambda: probe.level() == ERROR, scaled(10.0)), probe.message()
        pulse.load_sink()
        pulse.play(_wav(tmp_path / "clicks2.wav", clicks))
        probe.features.clear()
        assert spin_until(nodes, lambda: probe.level() == OK and len(probe.features) > 5, scaled(15.0)), (
            probe.message()
        )
    finally:
        pulse.stop_players()
        node.destroy_node()
        probe.node.destroy_node()


def test_wrong_device_name_is_refused_with_the_device_list(ros: None, pulse: Pulse) -> None:
    node, probe = _node(source_type="device", source="no-such-microphone"), Probe()
    try:
        assert spin_until([node, probe.node], lambda: probe.level() == ERROR, scaled(8.0))
        assert "no input device matches 'no-such-microphone'" in probe.message()
        assert "'pulse'" in probe.message(), probe.message()  # the devices that exist are listed
    finally:
        node.destroy_node()
        probe.node.destroy_node()


def test_generator_source_publishes_features_with_tempo(ros: None) -> None:
    node, probe = _node(source_type="generator", generator="click", generator_bpm=132.0), Probe()
    try:
        ok = lambda: len(probe.features) > 5 and abs(probe.features[-1].tempo_bpm - 132.0) <= 2.0  # noqa: E731
        assert spin_until([node, probe.node], ok, scaled(12.0)), [m.tempo_bpm for m in probe.features[-3:]]
        f = probe.features[-1]
        assert probe.level() == OK and f.sample_rate_hz == RATE and f.window_samples == 1024
        assert len(f.band_energy_db) == len(f.band_edges_hz) - 1 == 6
        assert f.dropped_samples == 0 and not probe.pcm  # raw PCM is off by default
    finally:
        node.destroy_node()
        probe.node.destroy_node()


def test_file_source_once_then_end(ros: None, tmp_path: Path) -> None:
    path = _wav(tmp_path / "clip.flac", render("drums", 44100, 2.0), 44100)
    node = _node(source_type="file", source=str(path), loop=False, realtime=False)
    probe = Probe()
    try:
        assert spin_until(
            [node, probe.node], lambda: probe.level() == WARN and "end of" in probe.message(), 10.0
        ), probe.message()
        assert probe.features and probe.features[0].sample_rate_hz == 44100
        assert probe.features[-1].first_sample_index + 1024 <= 2 * 44100
    finally:
        node.destroy_node()
        probe.node.destroy_node()


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "cannot decode"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", "cannot decode"),
        (b"not audio " * 100, "cannot decode"),
    ],
)
def test_bad_files_turn_error_without_crashing(
    ros: None, tmp_path: Path, content: bytes, reason: str
) -> None:
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    node, probe = _node(source_type="file", source=str(path), reconnect_initial_s=0.1), Probe()
    try:
        assert spin_until([node, probe.node], lambda: probe.level() == ERROR, scaled(8.0))
        assert reason in probe.message() and "reopening" in probe.message()
    finally:
        node.destroy_node()
        probe.node.destroy_node()


def test_absurd_parameters_are_refused_with_a_reason(ros: None) -> None:
    node = _node(source_type="generator", sample_rate=10_000_000)  # from the file: default used
    try:
        assert node.params["sample_rate"] == RATE and "sample_rate" in node.params.rejected
        for name, value, why in (
            ("sample_rate", 1, "out of range"),
            ("window_samples", 1000, "multiple of 512"),
            ("band_edges_hz", [100.0, 50.0], "rising"),
            ("source_type", "laser", "one of"),
        ):
            (result,) = node.set_parameters([Parameter(name, value=value)])
            assert not result.successful and why in result.reason, (name, result.reason)
    finally:
        node.destroy_node()


def test_run_time_source_index_or_name_taken_without_a_refusal(ros: None) -> None:
    """`source` is dynamically typed: `ros2 param set /audio_source source 7` (a device index) and
    then `source default` (a name) are both taken, and neither shows as refused on /diagnostics
    (the type pre-check must not compare against the type the last value happened to have)."""
    from rcl_interfaces.srv import SetParameters

    from krystal.ros.params import refusals

    node, probe = _node(source_type="generator"), Probe()
    setter = rclpy.create_node("audio_param_setter")
    nodes = [node, probe.node, setter]
    parameters = "audio_source: parameters"
    try:
        client = setter.create_client(SetParameters, "/audio_source/set_parameters")
        assert spin_until(nodes, client.service_is_ready, scaled(5.0))
        assert spin_until(nodes, lambda: SOURCE in probe.status, scaled(5.0))  # /diagnostics matched
        for value in (7, "default", 3, ""):
            future = client.call_async(
                SetParameters.Request(parameters=[Parameter("source", value=value).to_parameter_msg()])
            )
            assert spin_until(nodes, future.done, scaled(5.0))
            (result,) = future.result().results
            assert result.successful, (value, result.reason)
            assert node.params["source"] == value and node.get_parameter("source").value == value
        # a bool is neither a name nor an index: refused with the node's own reason
        (bad,) = node.set_parameters([Parameter("source", value=True)])
        assert not bad.successful and "neither a name" in bad.reason, bad.reason
        refused = [s for s in probe.history if s.name == parameters and "wrong type" in s.message]
        assert not refused, refused[0].message
        assert set(refusals(node)) == {"source"} and "neither a name" in refusals(node)["source"].reason
    finally:
        setter.destroy_node()
        probe.node.destroy_node()
        node.destroy_node()


def _stamp_ns(m: AudioFeatures) -> int:
    return m.header.stamp.sec * 1_000_000_000 + m.header.stamp.nanosec


@pytest.mark.parametrize("loop", [True, False])
def test_default_paced_file_source_publishes(ros: None, tmp_path: Path, loop: bool) -> None:
    """`realtime: true` and `loop: true` are the defaults: the file plays from its first paced read
    (the first tick has no whole block due), with stamps that rise with the sample index."""
    path = _wav(tmp_path / "clip.wav", render("click", 44100, 1.5), 44100)
    params: dict[str, object] = {"source_type": "file", "source": str(path)}
    if not loop:
        params["loop"] = False
    node, probe = _node(**params), Probe()
    try:
        if loop:  # more than the file's 1.5 s: it started again
            done = lambda: probe.features and probe.features[-1].first_sample_index > 2 * 44100  # noqa: E731
        else:
            done = lambda: probe.level() == WARN and "end of" in probe.message()  # noqa: E731
        assert spin_until([node, probe.node], done, scaled(15.0)), (probe.message(), len(probe.features))
        assert probe.features, probe.message()
        assert "after 0 samples" not in probe.message()
        stamps = [_stamp_ns(m) for m in probe.features]
        assert all(b > a for a, b in itertools.pairwise(stamps))
        first = probe.features[0].first_sample_index
        for m in probe.features:
            since = (m.first_sample_index - first) / 44100 * 1e9
            assert _stamp_ns(m) - stamps[0] == pytest.approx(since, abs=2e3)
        if not loop:  # nothing flows any more: the streams task says so
            streams = "audio_source: streams"

            def stopped() -> bool:
                s = probe.status.get(streams)
                return s is not None and s.level == WARN and "audio/features" in s.message

            assert spin_until([node, probe.node], stopped, scaled(10.0)), probe.status.get(streams)
    finally:
        node.destroy_node()
        probe.node.destroy_node()


def test_unpaced_file_stamps_follow_the_sample_index(ros: None, tmp_path: Path) -> None:
    path = _wav(tmp_path / "clip.wav", render("drums", 44100, 1.0), 44100)
    node = _node(source_type="file", source=str(path), realtime=False, analysis_rate_hz=50.0)
    probe = Probe()
    try:
        ok = lambda: len(probe.features) > 200  # noqa: E731  (several loops of the file)
        assert spin_until([node, probe.node], ok, scaled(15.0)), len(probe.features)
        stamps = [_stamp_ns(m) for m in probe.features]
        assert all(b > a for a, b in itertools.pairwise(stamps))
    finally:
        node.destroy_node()
        probe.node.destroy_node()


def test_integer_device_index_known_length_stream_no_phantom_drops(
    ros: None, pulse: Pulse, tmp_path: Path
) -> None:
    """`-p source:=7` as users write it: an integer is the device's index. Through the real
    PulseAudio server a click track of known length arrives whole: no drop is reported, the stamps
    rise with the sample index as fast as it does, and the tempo is the one read offline."""
    from krystal.audio.features import Analyzer, Chunk
    from krystal.audio.sources import input_devices

    index = next(i for i, name in input_devices() if name == "pulse")
    bpm, seconds = 142.5, 12.0
    clicks = render("click", RATE, seconds, (Segment(0.0, bpm),), level_dbfs=-10.0)
    clicks += render("tone", RATE, seconds, level_dbfs=-30.0, tone_hz=300.0)  # every window audible
    offline = Analyzer(RATE, window_samples=1024).push(Chunk(clicks, 0, 0))[-1].tempo_bpm
    node, probe = _node(source_type="device", source=index, sample_rate=RATE), Probe()
    nodes = [node, probe.node]
    try:
        assert spin_until(
            nodes, lambda: probe.level() in (WARN, OK) and "device" in probe.message(), scaled(10.0)
        )
        assert f"device {index} 'pulse'" in probe.message(), probe.message()
        assert node.params["source"] == index and "source" not in node.params.rejected
        probe.features.clear()
        pulse.play(_wav(tmp_path / "clicks.wav", clicks))

        def heard() -> list[AudioFeatures]:
            return [m for m in probe.features if m.rms_dbfs > -60.0]

        assert spin_until(nodes, lambda: len(heard()) * 1024 >= (seconds - 1.0) * RATE, seconds + 10.0)
        assert spin_until(nodes, lambda: pulse.players[-1].poll() is not None, scaled(5.0))
        spin_until(nodes, lambda: False, 0.5)  # the last windows
        got = probe.features
        assert all(m.dropped_samples == 0 for m in got), got[-1].dropped_samples
        index_s = (got[-1].first_sample_index - got[0].first_sample_index) / RATE
        stamp_s = (_stamp_ns(got[-1]) - _stamp_ns(got[0])) / 1e9
        # the stamp line follows the observed times slowly; what the server's clock does under a
        # heavily loaded machine moves it (measured 0.02-0.5 s here at load 11): a sanity bound
        assert abs(stamp_s - index_s) < 0.05 * index_s, (stamp_s, index_s)
        assert all(b > a for a, b in itertools.pairwise(_stamp_ns(m) for m in got))
        loud = heard()
        assert abs(len(loud) * 1024 / RATE - seconds) < 0.5, len(loud) * 1024 / RATE
        assert abs(loud[-1].tempo_bpm - offline) <= 1.0 and abs(offline - bpm) <= 2.0, (
            loud[-1].tempo_bpm,
            offline,
        )
    finally:
        pulse.stop_players()
        node.destroy_node()
        probe.node.destroy_node()


def test_shutdown_while_streaming_logs_no_error(tmp_path: Path) -> None:
    """Ctrl-C shuts the context down while the timer may still run: that is not a failure."""
    context = rclpy.Context()
    rclpy.init(context=context)
    node = AudioSourceNode(
        context=context,
        parameter_overrides=[Parameter("source_type", value="generator")],
    )
    try:
        deadline = time.monotonic() + 10.0
        while node._published == 0 and time.monotonic() < deadline:
            node._tick()  # the timer's callback, as the executor calls it
            time.sleep(0.05)
        assert node._published > 0
        source = node._source
        assert source is not None
        context.try_shutdown()  # as SIGINT does: the node's handles go while a tick may be running
        node._opened, node._source = True, source  # that tick got past its context check
        node._tick()  # and publishes into a context that is gone
        node._tick()  # a later one
        assert node._errors == 0 and node._health.level != ERROR, node._health
    finally:
        with contextlib.suppress(Exception):  # the context is gone, and the node with it
            node.destroy_node()
