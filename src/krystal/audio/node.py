"""audio_source: audio from an input device, a file or a generator to AudioFeatures on audio/features.

The device callback only queues blocks; a timer drains them and runs the analysis in batches off
the audio thread. A device that vanishes, stalls or fails turns ERROR and is reopened with backoff.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.time import Time
from std_msgs.msg import Header

from krystal.audio.features import DEFAULT_BAND_EDGES_HZ, Analyzer, Chunk, Features, band_edges_problem
from krystal.audio.generator import PATTERNS
from krystal.audio.sources import SOURCE_TYPES, AudioSource, AudioSourceError, EndOfStream, make_source
from krystal.audio.spectrum import HOP
from krystal.backoff import Backoff
from krystal.msg import AudioFeatures, AudioPcm
from krystal.ros.diagnostics import ERROR, OK, WARN, Diagnostics, Health
from krystal.ros.params import Param, ParamTable
from krystal.ros.qos import overridable, sensor_qos
from krystal.ros.streams import publish_stream
from krystal.sched.metrics import RateMeter


class _NameOrIndex(Param):
    """A parameter that takes a string or an integer: `-p source:=7` is a device index."""

    def descriptor(self) -> ParameterDescriptor:
        d = super().descriptor()
        d.dynamic_typing = True
        return d


def _source_problem(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return f"source={value!r} is neither a name or path (string) nor a device index (integer)"
    return None if not isinstance(value, int) or value >= 0 else f"source={value} is not a device index"


def _window_problem(value: Any) -> str | None:
    return None if int(value) % HOP == 0 else f"window_samples={value} is not a multiple of {HOP}"


PARAMS = (
    Param(
        "source_type",
        "auto",
        "auto: the default input device, or the generator when there is none; device, file, generator",
        choices=SOURCE_TYPES,
    ),
    _NameOrIndex(
        "source",
        "",
        "Input device name substring, or its index (an integer or digits; '' the default input); "
        "file path for file",
        validate=_source_problem,
    ),
    Param("sample_rate", 48000, "Capture and generator rate in Hz (files keep their own)", 8000, 192000),
    Param("channels", 1, "Channels captured from the device, downmixed to mono", 1, 32),
    Param("block_size", 512, "Frames per device callback (and generator/file pacing block)", 32, 8192),
    Param("generator", "drums", "Generator pattern", choices=PATTERNS),
    Param("generator_bpm", 120.0, "Generator tempo (click and drums)", 30.0, 300.0),
    Param("generator_level_dbfs", -12.0, "Generator peak level", -60.0, 0.0),
    Param("tone_hz", 440.0, "Generator tone frequency", 20.0, 20000.0),
    Param("loop", True, "Start a file again at its end"),
    Param("realtime", True, "Pace a file in real time; false: as fast as the analysis runs"),
    Param(
        "window_samples",
        1024,
        "Samples per AudioFeatures window (a multiple of 512)",
        512,
        16384,
        validate=_window_problem,
    ),
    Param(
        "band_edges_hz",
        list(DEFAULT_BAND_EDGES_HZ),
        "Edges of the energy bands, rising, n+1 for n bands",
        validate=band_edges_problem,
        param_type=Parameter.Type.DOUBLE_ARRAY,
    ),
    Param("min_bpm", 60.0, "Slowest tempo the tracker reports", 30.0, 200.0),
    Param("max_bpm", 180.0, "Fastest tempo the tracker reports", 60.0, 300.0),
    Param(
        "tempo_prior_bpm",
        120.0,
        "Centre of the log-normal tempo prior that picks the metrical level (Ellis 2007; librosa's 120)",
        40.0,
        240.0,
    ),
    Param(
        "tempo_prior_octaves",
        0.7,
        "Width (standard deviation, octaves) of the tempo prior; smaller pins the level harder",
        0.1,
        4.0,
    ),
    Param("analysis_rate_hz", 20.0, "How often queued audio is analysed and published (batches)", 1.0, 200.0),
    Param("publish_pcm", False, "Also publish the mono PCM on audio/pcm (AudioPcm)"),
    Param("frame_id", "microphone", "frame_id of the published messages"),
    Param("reconnect_initial_s", 0.5, "First delay before reopening a failed source", 0.05, 60.0),
    Param("reconnect_max_s", 8.0, "Longest delay between reopen attempts", 0.1, 600.0),
    Param(
        "stall_timeout_s",
        2.0,
        "A device that delivers no audio for this long is closed and reopened",
        0.1,
        60.0,
    ),
)
_REOPEN = {
    "source_type",
    "source",
    "sample_rate",
    "channels",
    "block_size",
    "generator",
    "generator_bpm",
    "generator_level_dbfs",
    "tone_hz",
    "loop",
    "realtime",
    "window_samples",
    "band_edges_hz",
    "min_bpm",
    "max_bpm",
    "tempo_prior_bpm",
    "tempo_prior_octaves",
    "stall_timeout_s",
}


class AudioSourceNode(Node):
    def __init__(self, node_name: str = "audio_source", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self.params = ParamTable(self, PARAMS, self._cross_check, self._on_change)
        self._pub = publish_stream(
            self, AudioFeatures, "audio/features", sensor_qos(depth=10), qos_overriding_options=overridable()
        )
        self._pcm_pub = self.create_publisher(
            AudioPcm, "audio/pcm", sensor_qos(depth=10), qos_overriding_options=overridable()
        )
        self._source: AudioSource | None = None
        self._analyzer: Analyzer | None = None
        self._opened = self._ended = self._awaiting_audio = False
        self._backoff = Backoff(self.params["reconnect_initial_s"], self.params["reconnect_max_s"])
        self._health = Health(WARN, "starting")
        self._opens = self._published = self._errors = 0
        self._dropped_before = 0  # samples dropped by earlier opens of this node
        self._last: Features | None = None
        self._rate = RateMeter()
        self._diagnostics = Diagnostics(self, hardware_id=self._describe())
        self._diagnostics.add("source", self._source_health)
        self._diagnostics.add("features", self._features_health)
        self._timer = self.create_timer(1.0 / self.params["analysis_rate_hz"], self._tick)

    def _describe(self) -> str:
        p = self.params
        return p["source_type"] if str(p["source"]) == "" else f"{p['source_type']}:{p['source']}"

    @staticmethod
    def _cross_check(values: dict[str, Any]) -> str | None:
        if values["source_type"] == "file" and not str(values["source"]).strip():
            return "source_type file needs a source (the file's path)"
        if values["reconnect_initial_s"] > values["reconnect_max_s"]:
            return "reconnect_initial_s must not exceed reconnect_max_s"
        if values["min_bpm"] * 1.5 > values["max_bpm"]:
            return "max_bpm must be at least 1.5 times min_bpm"
        return None

    def _on_change(self, changed: set[str]) -> None:
        if changed & _REOPEN:
            self._close_source()
            self._source, self._ended = None, False
            self._backoff.reset()
        if "analysis_rate_hz" in changed:
            self._timer.cancel()
            self.destroy_timer(self._timer)
            self._timer = self.create_timer(1.0 / self.params["analysis_rate_hz"], self._tick)
        if changed & {"reconnect_initial_s", "reconnect_max_s"}:
            self._backoff = Backoff(self.params["reconnect_initial_s"], self.params["reconnect_max_s"])

    def _set_health(self, health: Health) -> None:
        changed = health.level != self._health.level
        self._health = health
        if changed:
            self._diagnostics.level_changed("source", health.level)

    def _make_source(self) -> AudioSource:
        p = self.params
        return make_source(
            source_type=p["source_type"],
            spec=str(p["source"]),
            sample_rate=p["sample_rate"],
            channels=p["channels"],
            block_size=p["block_size"],
            generator=p["generator"],
            bpm=p["generator_bpm"],
            level_dbfs=p["generator_level_dbfs"],
            tone_hz=p["tone_hz"],
            loop=p["loop"],
            realtime=p["realtime"],
            stall_timeout_s=p["stall_timeout_s"],
        )

    def _open_source(self, now_s: float) -> bool:
        p = self.params
        try:
            if self._source is None:
                self._source = self._make_source()
            self._source.open()
            self._analyzer = Analyzer(
                self._source.sample_rate,
                p["window_samples"],
                p["band_edges_hz"],
                p["min_bpm"],
                p["max_bpm"],
                prior_bpm=p["tempo_prior_bpm"],
                prior_octaves=p["tempo_prior_octaves"],
            )
        except (AudioSourceError, ValueError) as exc:
            self._fail(now_s, str(exc))
            return False
        self._opened, self._awaiting_audio = True, True
        self._opens += 1
        if self._health.level != ERROR:  # after a failure its reason stays until audio flows again
            self._set_health(Health(WARN, f"opened {self._source.description}; waiting for audio"))
        return True

    def _close_source(self) -> None:
        if self._opened and self._source is not None:
            self._dropped_before += self._source.dropped_samples
            self._source.close()
        self._opened = False

    def _fail(self, now_s: float, error: str) -> None:
        self._close_source()
        self._errors += 1
        wait = self._backoff.failed(now_s)
        text = f"{error}; reopening in {wait:.1f} s (attempt {self._backoff.attempts})"
        self.get_logger().error(text, throttle_duration_sec=5.0)
        self._set_health(Health(ERROR, text))

    def _tick(self) -> None:
        if not self.context.ok():  # shutting down (Ctrl-C): nothing to open, read or report
            return
        now_s = time.monotonic()
        if not self._opened and (self._ended or not self._backoff.due(now_s) or not self._open_source(now_s)):
            return
        source, analyzer = self._source, self._analyzer
        assert source is not None and analyzer is not None
        try:
            chunks = source.read()
            for chunk in chunks:
                self._publish(chunk, analyzer.push(chunk), source)
        except EndOfStream as exc:
            self._close_source()
            self._ended = True
            self.get_logger().warning(f"{exc}; set loop:=true to repeat")
            self._set_health(Health(WARN, str(exc)))
            return
        except AudioSourceError as exc:
            self._fail(now_s, str(exc))
            return
        except Exception as exc:  # bad audio must not kill the node: report, reopen
            if not self.context.ok():  # shutting down (Ctrl-C): the publishers went, not the audio
                return
            self._fail(now_s, f"{source.description}: analysis failed: {exc!r}")
            return
        if chunks and self._awaiting_audio:
            self._awaiting_audio = False
            if self._backoff.attempts:
                self.get_logger().info(
                    f"{source.description} delivers again after {self._backoff.attempts} attempt(s)"
                )
            else:
                self.get_logger().info(f"analysing {source.description}")
            self._backoff.reset()
        if chunks:
            streaming = Health(OK, f"streaming {source.description}")
            if self._health != streaming:
                self._set_health(streaming)

    def _publish(self, chunk: Chunk, features: list[Features], source: AudioSource) -> None:
        p = self.params
        if p["publish_pcm"]:
            pcm = AudioPcm(
                header=Header(stamp=Time(nanoseconds=chunk.capture_ns).to_msg(), frame_id=p["frame_id"]),
                sample_rate_hz=source.sample_rate,
                first_sample_index=chunk.first_sample_index,
            )
            pcm.samples = (np.clip(chunk.samples, -1.0, 1.0) * 32767.0).astype(np.int16)
            self._pcm_pub.publish(pcm)
        edges = [float(e) for e in p["band_edges_hz"]]
        dropped = self._dropped_before + source.dropped_samples
        for f in features:
            msg = AudioFeatures(
                header=Header(stamp=Time(nanoseconds=f.capture_ns).to_msg(), frame_id=p["frame_id"]),
                sample_rate_hz=source.sample_rate,
                first_sample_index=f.first_sample_index,
                window_samples=f.window_samples,
                dropped_samples=dropped,
                rms_dbfs=f.rms_dbfs,
                peak_dbfs=f.peak_dbfs,
                loudness_lufs=f.loudness_lufs,
                spectral_centroid_hz=f.spectral_centroid_hz,
                spectral_flatness=f.spectral_flatness,
                band_edges_hz=edges,
                band_energy_db=list(f.band_energy_db),
                onset=f.onset,
                onset_strength=f.onset_strength,
                tempo_bpm=f.tempo_bpm,
                tempo_confidence=f.tempo_confidence,
                beat_phase=f.beat_phase,
            )
            self._pub.publish(msg)
            self._published += 1
            self._rate.tick()
            self._last = f

    def _source_health(self) -> Health:
        source = self._source
        values = {
            "source": self._describe(),
            "description": source.description if source is not None else "",
            "sample_rate_hz": str(source.sample_rate if source is not None else 0),
            "windows_published": str(self._published),
            "windows_per_s": f"{self._rate.rate_hz():.1f}",
            "dropped_samples": str(
                self._dropped_before + (source.dropped_samples if source is not None else 0)
            ),
            "overflows": str(source.overflows if source is not None else 0),
            "underflows": str(source.underflows if source is not None else 0),
            "analysis_restarts": str(self._analyzer.restarts if self._analyzer is not None else 0),
            "opens": str(self._opens),
            "errors": str(self._errors),
            "reconnect_attempts": str(self._backoff.attempts),
        }
        return Health(self._health.level, self._health.message, values)

    def _features_health(self) -> Health:
        f = self._last
        if f is None:
            return Health(OK, "no audio analysed yet")
        values = {
            "rms_dbfs": f"{f.rms_dbfs:.1f}",
            "loudness_lufs": f"{f.loudness_lufs:.1f}",
            "spectral_centroid_hz": f"{f.spectral_centroid_hz:.0f}",
            "tempo_bpm": f"{f.tempo_bpm:.1f}",
            "tempo_confidence": f"{f.tempo_confidence:.2f}",
        }
        tempo = f"{f.tempo_bpm:.1f} BPM" if f.tempo_bpm else "no tempo yet"
        return Health(OK, f"{f.loudness_lufs:.1f} LUFS, {tempo}", values)

    def destroy_node(self) -> None:
        self._close_source()
        super().destroy_node()
