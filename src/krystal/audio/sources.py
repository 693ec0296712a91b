"""Audio sources behind one interface: an input device (sounddevice), a file (soundfile), a generator.

`read()` returns the chunks that arrived since the last call (mono, downmixed), each with its first
sample's index and capture time; it raises AudioSourceError when the device is gone, stalled or
failed, and EndOfStream at the end of a file that does not loop. Sample indices count every sample
the source should have delivered, so a drop shows as a jump and in `dropped_samples`.
"""

from __future__ import annotations

import collections
import contextlib
import os
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from krystal.audio.clock import SampleClock
from krystal.audio.features import Chunk
from krystal.audio.generator import Generator

SOURCE_TYPES = ("auto", "device", "file", "generator")
FIRST_AUDIO_GRACE_S = 5.0  # a device's first callback may take seconds (PulseAudio wakes a sink)
FAST_READ_S = 0.5  # unpaced file: audio returned per read

Clock = Callable[[], int]  # ns, the ROS clock the stamps are on (system time, as rclpy's default)


class AudioSourceError(RuntimeError):
    """The source cannot deliver audio now (not found, unplugged, refused settings, bad file)."""


class EndOfStream(AudioSourceError):
    """A file source reached its end and does not loop."""


class AudioSource(Protocol):
    description: str
    sample_rate: int
    dropped_samples: int
    overflows: int
    underflows: int

    def open(self) -> None: ...

    def read(self) -> list[Chunk]: ...

    def close(self) -> None: ...


def downmix(samples: NDArray[Any]) -> NDArray[np.float32]:
    """Mono float32: the mean of the channels (columns)."""
    x = np.asarray(samples, dtype=np.float32)
    return x if x.ndim == 1 else np.asarray(x.mean(axis=1), dtype=np.float32)


class _Paced:
    """Real-time pacing: how many samples are due since open, in whole blocks."""

    def __init__(self, sample_rate: int, block_size: int, clock: Clock) -> None:
        self.sample_rate, self.block_size, self.clock = sample_rate, block_size, clock
        self.start_ns = clock()
        self.produced = 0

    def due(self) -> int:
        elapsed = self.clock() - self.start_ns
        blocks = int(elapsed * self.sample_rate // (self.block_size * 1_000_000_000))
        return max(0, blocks * self.block_size - self.produced)

    def stamp(self, index: int) -> int:
        return self.start_ns + int(index * 1e9 / self.sample_rate)


class GeneratorSource:
    def __init__(
        self,
        pattern: str,
        sample_rate: int,
        block_size: int = 512,
        *,
        bpm: float = 120.0,
        level_dbfs: float = -12.0,
        tone_hz: float = 440.0,
        clock: Clock = time.time_ns,
    ) -> None:
        self.pattern, self.sample_rate, self.block_size = pattern, sample_rate, block_size
        self.bpm, self.level_dbfs, self.tone_hz, self.clock = bpm, level_dbfs, tone_hz, clock
        what = f"{pattern} at {bpm:g} BPM" if pattern in ("click", "drums") else pattern
        self.description = f"generator {what}, {sample_rate} Hz"
        self.dropped_samples = self.overflows = self.underflows = 0
        self._gen: Generator | None = None
        self._pace: _Paced | None = None

    def open(self) -> None:
        try:
            self._gen = Generator(self.pattern, self.sample_rate, self.bpm, self.level_dbfs, self.tone_hz)
        except ValueError as exc:
            raise AudioSourceError(str(exc)) from exc
        self._pace = _Paced(self.sample_rate, self.block_size, self.clock)

    def read(self) -> list[Chunk]:
        if self._gen is None or self._pace is None:
            raise AudioSourceError("generator is not open")
        n = self._pace.due()
        if not n:
            return []
        index = self._pace.produced
        self._pace.produced += n
        return [Chunk(self._gen.read(n), index, self._pace.stamp(index))]

    def close(self) -> None:
        self._gen = self._pace = None


class FileSource:
    """WAV/FLAC/OGG (anything libsndfile reads), looped or once, real-time paced or unpaced."""

    def __init__(
        self,
        path: str,
        loop: bool = True,
        realtime: bool = True,
        block_size: int = 512,
        clock: Clock = time.time_ns,
    ) -> None:
        self.path, self.loop, self.realtime, self.block_size, self.clock = (
            path,
            loop,
            realtime,
            block_size,
            clock,
        )
        self.description = f"file {path}"
        self.sample_rate = 0
        self.dropped_samples = self.overflows = self.underflows = 0
        self._file: Any = None
        self._pace: _Paced | None = None
        self._index = 0

    def open(self) -> None:
        import soundfile

        if not os.path.isfile(self.path):
            raise AudioSourceError(f"audio file not found: {self.path}")
        try:
            f = soundfile.SoundFile(self.path)
        except (RuntimeError, ValueError, TypeError, OSError) as exc:  # LibsndfileError is a RuntimeError
            raise AudioSourceError(f"cannot decode audio file {self.path}: {exc}") from exc
        if f.samplerate <= 0 or f.channels <= 0:
            f.close()
            raise AudioSourceError(f"audio file {self.path} has no valid format")
        if f.frames == 0:
            f.close()
            raise AudioSourceError(f"audio file {self.path} has no samples")
        self._file, self.sample_rate, self._index = f, int(f.samplerate), 0
        self.description = f"file {self.path} ({f.format}, {f.samplerate} Hz, {f.channels} ch)"
        self._pace = _Paced(self.sample_rate, self.block_size, self.clock)

    def read(self) -> list[Chunk]:
        f, pace = self._file, self._pace
        if f is None or pace is None:
            raise AudioSourceError("file source is not open")
        want = pace.due() if self.realtime else int(FAST_READ_S * self.sample_rate)
        if want <= 0:  # paced, and no whole block due yet (always so on the first read after open)
            return []
        parts: list[NDArray[np.float32]] = []
        got = 0
        while got < want:
            try:
                data = f.read(want - got, dtype="float32", always_2d=True)
            except (RuntimeError, ValueError, OSError) as exc:
                raise AudioSourceError(f"cannot read {self.path}: {exc}") from exc
            if len(data) == 0:
                if not self.loop:
                    break
                if self._index + got == 0:
                    raise AudioSourceError(f"no samples could be read from {self.path}")
                f.seek(0)
                data = f.read(want - got, dtype="float32", always_2d=True)
                if len(data) == 0:
                    raise AudioSourceError(f"no samples could be read from {self.path} after a rewind")
            parts.append(downmix(data))
            got += len(data)
        if not parts:
            raise EndOfStream(f"end of {self.path} after {self._index} samples")
        index = self._index
        self._index += got
        pace.produced += got if self.realtime else 0
        # the sample index on the clock of the open, paced or not: read time would jitter and run back
        return [Chunk(np.concatenate(parts), index, pace.stamp(index))]

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _portaudio(refresh: bool) -> Any:
    import sounddevice

    if refresh:  # PortAudio lists devices once per initialisation: see the ones plugged since
        sounddevice._terminate()
        sounddevice._initialize()
    return sounddevice


def input_devices(refresh: bool = True) -> list[tuple[int, str]]:
    """(index, name) of every device with input channels, as PortAudio sees them now."""
    sd = _portaudio(refresh)
    return [(i, str(d["name"])) for i, d in enumerate(sd.query_devices()) if d["max_input_channels"] > 0]


def has_input_device() -> bool:
    try:
        sd = _portaudio(True)
        return bool(input_devices(refresh=False)) and int(sd.default.device[0]) >= 0
    except Exception:  # no PortAudio library at all counts as no device
        return False


def resolve_device(spec: str, devices: list[tuple[int, str]], default_index: int) -> int:
    """Device index for `spec`: '' the default input, digits an index, else a name substring."""
    listing = ", ".join(f"{i} {name!r}" for i, name in devices) or "none"
    spec = spec.strip()
    if not spec:
        if default_index < 0 or default_index not in [i for i, _ in devices]:
            raise AudioSourceError(f"no default input device; input devices: {listing}")
        return default_index
    if spec.isdigit():
        if int(spec) not in [i for i, _ in devices]:
            raise AudioSourceError(f"no input device with index {spec}; input devices: {listing}")
        return int(spec)
    matches = [i for i, name in devices if spec.lower() in name.lower()]
    if not matches:
        raise AudioSourceError(f"no input device matches {spec!r}; input devices: {listing}")
    exact = [i for i, name in devices if name.lower() == spec.lower()]
    return (exact or matches)[0]


class DeviceSource:
    """A PortAudio input stream; its callback only copies blocks into a bounded queue.

    Stamps come from the sample index through a SampleClock fitted to the stream's
    inputBufferAdcTime mapped onto the system clock (the callback's host time without one); a
    drop the clock proves beyond the jitter, the device's overflow flag, or a full queue advance
    the sample index and `dropped_samples` together.
    """

    def __init__(
        self,
        spec: str,
        sample_rate: int = 48000,
        channels: int = 1,
        *,
        block_size: int = 512,
        stall_timeout_s: float = 2.0,
        queue_s: float = 2.0,
        clock: Clock = time.time_ns,
    ) -> None:
        self.spec, self.sample_rate, self.channels, self.block_size = spec, sample_rate, channels, block_size
        self.stall_timeout_s, self.clock = stall_timeout_s, clock
        self.description = f"device {spec or '(default input)'}"
        self.dropped_samples = self.overflows = self.underflows = 0
        self._max_blocks = max(4, int(queue_s * sample_rate / block_size))
        self._queue: collections.deque[tuple[int, int, NDArray[np.float32]]] = collections.deque()
        self._lock = threading.Lock()
        self._stream: Any = None
        self._index = 0
        self._clock = SampleClock(sample_rate)
        self._last_callback_s = 0.0
        self._opened_s = 0.0
        self._callbacks = 0
        self._error: str | None = None

    def open(self) -> None:
        self.close()
        try:
            sd = _portaudio(True)
            devices = input_devices(refresh=False)
            index = resolve_device(self.spec, devices, int(sd.default.device[0]))
            info = sd.query_devices(index)
            if self.channels > int(info["max_input_channels"]):
                raise AudioSourceError(
                    f"device {index} {info['name']!r} has {info['max_input_channels']} input channels, "
                    f"{self.channels} asked"
                )
            sd.check_input_settings(device=index, channels=self.channels, samplerate=self.sample_rate)
            stream = sd.InputStream(
                device=index,
                samplerate=self.sample_rate,
                channels=self.channels,
                blocksize=self.block_size,
                dtype="float32",
                callback=self._callback,
            )
        except AudioSourceError:
            raise
        except Exception as exc:  # PortAudioError, ValueError: refused settings or a vanished device
            raise AudioSourceError(f"cannot open input device {self.spec or '(default)'}: {exc}") from exc
        self.description = f"device {index} {info['name']!r}, {self.sample_rate} Hz, {self.channels} ch"
        self._index, self._callbacks, self._error = 0, 0, None
        self._clock = SampleClock(self.sample_rate)
        self._queue.clear()
        self._opened_s = self._last_callback_s = time.monotonic()
        self._stream = stream
        try:
            stream.start()
        except Exception as exc:
            self.close()
            raise AudioSourceError(f"cannot start input device {self.description}: {exc}") from exc

    def _callback(self, indata: NDArray[np.float32], frames: int, time_info: Any, status: Any) -> None:
        now_ns = self.clock()
        adc, current = float(time_info.inputBufferAdcTime), float(time_info.currentTime)
        observed_ns = (
            now_ns - int((current - adc) * 1e9)
            if adc > 0 and current >= adc
            else now_ns - int(frames * 1e9 / self.sample_rate)
        )
        with self._lock:
            if status.input_underflow:  # PortAudio delivered silence in place of missing input
                self.underflows += 1
            if status.input_overflow:
                self.overflows += 1
            reading = self._clock.observe(
                self._index, observed_ns, frames, bool(status.input_overflow), arrival_ns=now_ns
            )
            self._index += reading.lost
            self.dropped_samples += reading.lost
            if len(self._queue) >= self._max_blocks:  # the reader fell behind: drop, never block
                self.dropped_samples += frames
            else:
                self._queue.append((self._index, reading.stamp_ns, indata.copy()))
            self._index += frames
            self._callbacks += 1
            self._last_callback_s = time.monotonic()

    def read(self) -> list[Chunk]:
        stream = self._stream
        if stream is None:
            raise AudioSourceError(f"{self.description} is not open")
        with self._lock:
            blocks = list(self._queue)
            self._queue.clear()
            idle_s = time.monotonic() - self._last_callback_s
            callbacks = self._callbacks
        chunks: list[Chunk] = []
        for index, stamp, data in blocks:  # join consecutive blocks: fewer, longer chunks
            mono = downmix(data)
            last = chunks[-1] if chunks else None
            if last is not None and last.first_sample_index + len(last.samples) == index:
                chunks[-1] = Chunk(
                    np.concatenate([last.samples, mono]), last.first_sample_index, last.capture_ns
                )
            else:
                chunks.append(Chunk(mono, index, stamp))
        if chunks:
            return chunks
        try:
            active = bool(stream.active)
        except Exception as exc:
            raise AudioSourceError(f"{self.description} failed: {exc}") from exc
        if not active:
            raise AudioSourceError(f"{self.description} stopped (device removed or failed)")
        limit = self.stall_timeout_s if callbacks else max(self.stall_timeout_s, FIRST_AUDIO_GRACE_S)
        if idle_s > limit:
            raise AudioSourceError(f"{self.description} stalled: no audio for {idle_s:.1f} s")
        return []

    def close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            for step in (stream.abort, stream.close):
                with contextlib.suppress(Exception):  # a vanished device's stream may refuse
                    step()


def make_source(
    *,
    source_type: str,
    spec: str,
    sample_rate: int,
    channels: int,
    block_size: int,
    generator: str,
    bpm: float,
    level_dbfs: float,
    tone_hz: float,
    loop: bool,
    realtime: bool,
    stall_timeout_s: float,
) -> AudioSource:
    """The source the parameters describe; `auto` is the default input device, or the generator
    when PortAudio sees none (so the graph always has audio)."""
    if source_type == "auto":
        source_type = "device" if has_input_device() else "generator"
    if source_type == "generator":
        return GeneratorSource(
            generator, sample_rate, block_size, bpm=bpm, level_dbfs=level_dbfs, tone_hz=tone_hz
        )
    if source_type == "file":
        return FileSource(spec, loop, realtime, block_size)
    if source_type == "device":
        return DeviceSource(
            spec, sample_rate, channels, block_size=block_size, stall_timeout_s=stall_timeout_s
        )
    raise ValueError(f"unknown source_type {source_type!r}; one of {', '.join(SOURCE_TYPES)}")
