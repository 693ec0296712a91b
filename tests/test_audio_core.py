"""The audio core without DDS: loudness against pyloudnorm, spectrum, onsets, tempo (steady and
after a step), the sample counter across gaps, file/generator sources, device selection, and a
fuzz of the file reader. Signals are generated, so the truth is known."""

from __future__ import annotations

import itertools
import types
from pathlib import Path

import numpy as np
import pytest
import scipy.fft
import soundfile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from krystal.audio import spectrum
from krystal.audio.clock import SampleClock
from krystal.audio.features import Analyzer, Chunk, Features, band_edges_problem
from krystal.audio.generator import Generator, Segment, render
from krystal.audio.sources import (
    AudioSourceError,
    DeviceSource,
    EndOfStream,
    FileSource,
    GeneratorSource,
    has_input_device,
    make_source,
    resolve_device,
)
from krystal.audio.sources import (
    GeneratorSource as _Gen,
)
from krystal.audio.tempo import BeatTracker, OnsetDetector


def analyse(x: np.ndarray, sr: int, chunk: int = 2048, window: int = 1024) -> list[Features]:
    a = Analyzer(sr, window_samples=window)
    out: list[Features] = []
    for i in range(0, len(x), chunk):
        out += a.push(Chunk(x[i : i + chunk], i, 1_000_000_000 + int(i * 1e9 / sr)))
    return out


@pytest.mark.parametrize("sr", [44100, 48000])
@pytest.mark.parametrize("kind", ["tone", "noise", "drums"])
def test_short_term_loudness_matches_pyloudnorm(sr: int, kind: str) -> None:
    import pyloudnorm

    x = render(kind, sr, 3.0, level_dbfs=-18.0, tone_hz=200.0 if sr == 44100 else 5000.0, seed=1)
    ours = analyse(x, sr)[-1].loudness_lufs
    ref = pyloudnorm.Meter(sr, block_size=3.0).integrated_loudness(x.astype(np.float64))
    assert abs(ours - ref) < 0.5, (ours, ref)


def test_levels_spectrum_and_bands_of_a_tone() -> None:
    sr = 48000
    x = render("tone", sr, 1.0, level_dbfs=-6.0, tone_hz=3000.0)
    f = analyse(x, sr)[-1]
    assert f.peak_dbfs == pytest.approx(-6.0, abs=0.1)
    assert f.rms_dbfs == pytest.approx(-9.01, abs=0.1)  # a sine's RMS is 3 dB under its peak
    assert f.spectral_centroid_hz == pytest.approx(3000.0, rel=0.03)
    assert f.spectral_flatness < 0.01
    bands = np.array(f.band_energy_db)  # default edges: the 2500-6000 Hz band holds the tone
    assert int(np.argmax(bands)) == 4
    assert bands[4] == pytest.approx(f.rms_dbfs, abs=0.5)
    noise = analyse(render("noise", sr, 1.0, seed=2), sr)[-1]
    assert noise.spectral_flatness > 0.3
    silence = analyse(np.zeros(sr, np.float32), sr)[-1]
    assert silence.rms_dbfs == -120.0 and silence.spectral_centroid_hz == 0.0 and not silence.onset


def test_onsets_of_a_click_track() -> None:
    sr = 44100
    x = render("click", sr, 8.0, (Segment(0.25, 120.0),), noise_dbfs=-50.0)
    fs = analyse(x, sr, window=512)
    onset_times = np.array([f.first_sample_index / sr for f in fs if f.onset])
    beats = np.arange(0.25, 8.0, 0.5)
    assert len(onset_times) == len(beats)
    assert np.abs(onset_times - beats).max() < 0.03


def _onsets_by_definition(odf: np.ndarray, sizes: list[int], m: int, refractory: int) -> np.ndarray:
    """The onset rule written out: per batch, the median of the m values before it (the first
    batch's own median before there are any) x 1.5 + 0.1; rising; refractory."""
    history = [float(np.median(odf[: sizes[0]]))] * m
    flags, pos, last = np.zeros(len(odf), bool), 0, -refractory
    for n in sizes:
        ref = float(np.median(history[-m:])) * 1.5 + 0.1  # m odd: the middle value
        for i in range(pos, pos + n):
            before = odf[i - 1] if i else history[-1]
            if odf[i] > ref and odf[i] > before and i - last >= refractory:
                flags[i], last = True, i
        history += odf[pos : pos + n].tolist()
        pos += n
    return flags


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 120), min_size=1, max_size=40), st.integers(0, 2**32 - 1))
def test_onsets_follow_their_rule_however_the_odf_is_batched(sizes: list[int], seed: int) -> None:
    # the median's history is a ring: batches shorter than it, as long, longer, wrapping
    rng = np.random.default_rng(seed)
    odf = rng.gamma(2.0, 0.1, sum(sizes)) + (rng.random(sum(sizes)) < 0.08) * rng.uniform(0.5, 3.0)
    detector = OnsetDetector(86.13, np.linspace(0.0, 22050.0, 513))
    m, refractory = len(detector._history), detector._refractory
    assert m % 2 == 1
    got, pos = [], 0
    for n in sizes:
        got.append(detector.onsets(odf[pos : pos + n]))
        pos += n
    np.testing.assert_array_equal(np.concatenate(got), _onsets_by_definition(odf, sizes, m, refractory))


def test_fast_transforms_match_scipy_fft() -> None:
    # scipy 1.8 (Humble's) to 1.17 take the direct path; it must agree with the public one
    assert spectrum.rfft is not spectrum._public_rfft and spectrum.irfft is not spectrum._public_irfft
    rng = np.random.default_rng(3)
    for dtype in (np.float32, np.float64):
        x = rng.standard_normal((3, 344)).astype(dtype)
        spec = spectrum.rfft(x, 1024)
        want = scipy.fft.rfft(x, 1024, axis=-1)
        assert spec.dtype == want.dtype
        np.testing.assert_allclose(spec, want, rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(spectrum.irfft(spec, 1024), scipy.fft.irfft(want, 1024), atol=1e-4)
    frames = rng.standard_normal((5, spectrum.FFT_SIZE)).astype(np.float32)
    np.testing.assert_allclose(
        spectrum.rfft(frames, spectrum.FFT_SIZE), scipy.fft.rfft(frames, axis=1), rtol=1e-4, atol=1e-3
    )


@pytest.mark.parametrize(
    ("pattern", "bpm", "swing", "noise"),
    [
        ("click", 60.0, 0.0, -40.0),
        ("click", 143.0, 0.0, -30.0),
        ("drums", 97.0, 0.2, -40.0),
        ("drums", 128.0, 0.0, -40.0),
    ],
)
def test_tempo_within_2_bpm(pattern: str, bpm: float, swing: float, noise: float) -> None:
    sr = 44100
    x = render(pattern, sr, 10.0, (Segment(0.1, bpm),), swing=swing, noise_dbfs=noise, seed=5)
    fs = analyse(x, sr)
    assert abs(fs[-1].tempo_bpm - bpm) <= 2.0, fs[-1].tempo_bpm
    assert 0.0 < fs[-1].tempo_confidence <= 1.0


def test_fast_backbeat_drums_are_read_at_the_beat_not_the_bar() -> None:
    """Kick on 1 and 3, snare on 2 and 4 at 178 BPM: each drum alone repeats at 89 BPM and the
    ACF prefers it; the backbeat cue (high bands answering the kick a beat later) gives 178.
    Without the cue this reads 89."""
    sr = 44100
    x = render("drums", sr, 10.0, (Segment(0.1, 178.0),), noise_dbfs=-40.0, seed=5)
    assert abs(analyse(x, sr)[-1].tempo_bpm - 178.0) <= 2.0


def test_backbeat_cue_does_not_double_slow_drums_or_clicks() -> None:
    """The cue only lifts a level whose beat the drums alternate on: slow drums and a click
    track (no low band) keep their tempo."""
    sr = 44100
    for pattern, bpm in (("drums", 72.0), ("click", 70.0)):
        x = render(pattern, sr, 10.0, (Segment(0.1, bpm),), noise_dbfs=-40.0, seed=3)
        assert abs(analyse(x, sr)[-1].tempo_bpm - bpm) <= 2.0, (pattern, bpm)


def test_tempo_locks_within_4_s_of_a_step_and_phase_follows_the_beat() -> None:
    sr = 44100
    x = render("click", sr, 16.0, (Segment(0.0, 90.0), Segment(8.0, 140.0)), noise_dbfs=-40.0)
    fs = analyse(x, sr)
    after = [f for f in fs if f.first_sample_index / sr >= 12.0]
    assert all(abs(f.tempo_bpm - 140.0) <= 2.0 for f in after), sorted({round(f.tempo_bpm) for f in after})
    beat_start = [f.beat_phase for f in after if (f.first_sample_index / sr - 8.0) % (60 / 140) < 0.012]
    phases = np.array(beat_start)  # windows that start on a beat: phase near 0 (or 1)
    assert np.all(np.minimum(phases, 1 - phases) < 0.15), phases


def test_cached_estimator_work_gives_the_estimates_computed_afresh() -> None:
    # what the tracker computes once per fill and lag must be what each estimate would compute
    sr = 44100
    x = render("drums", sr, 14.0, (Segment(0.0, 97.0), Segment(7.0, 151.0)), swing=0.1, noise_dbfs=-40.0)
    cached, fresh = BeatTracker(sr), BeatTracker(sr)
    for i in range(0, len(x) - 2048, 2048):
        a = cached.process(x[i : i + 2048])
        fresh.tempo._memo.clear()
        b = fresh.process(x[i : i + 2048])
        assert (a.bpm, a.confidence, a.last_beat_frame) == (b.bpm, b.confidence, b.last_beat_frame)
    assert abs(cached.tempo.tempo.bpm - 151.0) <= 2.0
    assert len(cached.tempo._memo) > 3


@pytest.mark.parametrize(("sr", "window"), [(22050, 1024), (48000, 1536)])
def test_batched_windows_give_the_features_of_window_by_window(sr: int, window: int) -> None:
    # the batch goes through each step at once (filter state, loudness ring, spectra, onsets):
    # whatever the batching, each window's features are those of one window at a time. 7 s: the
    # 3 s loudness ring wraps twice; a quiet end checks its running sum
    x = np.concatenate(
        [
            render("drums", sr, 4.0, (Segment(0.0, 97.0),), noise_dbfs=-40.0, seed=3),
            render("tone", sr, 4.0, level_dbfs=-60.0, tone_hz=300.0),
        ]
    )
    one = analyse(x, sr, chunk=window, window=window)
    rng = np.random.default_rng(5)
    cuts = np.cumsum(rng.integers(1, 6 * window, 40))
    batched: list[Features] = []
    a = Analyzer(sr, window_samples=window)
    for i, j in itertools.pairwise([0, *cuts[cuts < len(x)].tolist(), len(x)]):
        batched += a.push(Chunk(x[i:j], i, 1_000_000_000 + int(i * 1e9 / sr)))
    assert len(batched) == len(one) == len(x) // window
    for f, g in zip(one, batched, strict=True):
        # (onset flags are not compared: their threshold is taken once per batch, by design)
        assert abs(f[0] - g[0]) <= 1 and f[1:3] == g[1:3]
        assert f.band_energy_db == pytest.approx(g.band_energy_db)
        assert [*f[3:8], *f[10:]] == pytest.approx([*g[3:8], *g[10:]], rel=1e-5, abs=1e-6)
    assert one[-1].loudness_lufs < -55.0 < one[len(one) // 3].loudness_lufs  # the ring followed


def test_gaps_keep_the_sample_counter_and_stamps_honest() -> None:
    sr = 48000
    a = Analyzer(sr, window_samples=1024)
    x = render("click", sr, 1.0)
    first = a.push(Chunk(x[:4096], 0, 5_000_000_000))
    later = a.push(Chunk(x[4096:8192], 4096 + 2048, 5_000_000_000 + int((4096 + 2048) * 1e9 / sr)))
    assert [f.first_sample_index for f in first] == [0, 1024, 2048, 3072]
    assert [f.first_sample_index for f in later] == [4096, 5120, 6144, 7168, 8192, 9216]
    assert later[2].capture_ns == 5_000_000_000 + int(6144 * 1e9 / sr)
    assert later[0].rms_dbfs == -120.0  # the gap is silence, not audio moved in time
    restarted = a.push(Chunk(x[:2048], 10 * sr, 0))  # a gap of seconds restarts the analysis
    assert a.restarts == 1 and restarted[0].first_sample_index == 10 * sr


def test_band_edges_and_windows_are_checked() -> None:
    assert band_edges_problem([0.0, 100.0, 50.0]) is not None
    assert band_edges_problem([100.0]) is not None
    assert band_edges_problem([0.0, 100.0]) is None
    with pytest.raises(ValueError, match="multiple of 512"):
        Analyzer(48000, window_samples=1000)


def test_generator_source_is_paced_by_its_clock() -> None:
    now = [10_000_000_000]
    src = GeneratorSource("click", 48000, 512, bpm=100.0, clock=lambda: now[0])
    src.open()
    assert src.read() == []
    now[0] += 100_000_000  # 0.1 s: 9 whole blocks of 512 are due
    (chunk,) = src.read()
    assert (chunk.first_sample_index, len(chunk.samples), chunk.capture_ns) == (0, 9 * 512, 10_000_000_000)
    now[0] += 100_000_000
    (chunk,) = src.read()
    assert chunk.first_sample_index == 9 * 512
    loop = Generator("drums", 8000, bpm=120.0).read(8000 * 17)  # longer than its 8 s cycle
    assert np.allclose(loop[: 8000 * 8], loop[8000 * 8 : 8000 * 16])
    with pytest.raises(AudioSourceError, match="unknown generator"):
        _Gen("laser", 48000).open()


@pytest.mark.parametrize("fmt", ["WAV", "FLAC", "OGG"])
def test_file_source_reads_loops_and_ends(tmp_path: Path, fmt: str) -> None:
    sr = 44100
    x = render("click", sr, 0.5)
    path = tmp_path / f"clip.{fmt.lower()}"
    soundfile.write(path, np.stack([x, x], axis=1), sr, format=fmt)
    once = FileSource(str(path), loop=False, realtime=False)
    once.open()
    (chunk,) = once.read()
    assert once.sample_rate == sr and len(chunk.samples) == len(x)
    assert np.abs(chunk.samples - x).max() < (0.05 if fmt == "OGG" else 1e-3)  # stereo downmixed
    with pytest.raises(EndOfStream):
        once.read()
    looped = FileSource(str(path), loop=True, realtime=False)
    looped.open()
    (chunk,) = looped.read()  # 0.5 s per read from a 0.5 s file that loops
    (chunk2,) = looped.read()
    assert chunk2.first_sample_index == len(chunk.samples)


def test_bad_files_are_refused_clearly(tmp_path: Path) -> None:
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio\n" * 50)
    zero = tmp_path / "zero.wav"
    soundfile.write(zero, np.zeros(0, np.float32), 48000)
    good = tmp_path / "good.wav"
    soundfile.write(good, render("click", 48000, 1.0), 48000, subtype="PCM_16")
    truncated = tmp_path / "truncated.wav"
    truncated.write_bytes(good.read_bytes()[:30])
    for path, reason in (
        (empty, "cannot decode"),
        (text, "cannot decode"),
        (zero, "no samples"),
        (truncated, "cannot decode|no samples"),
        (tmp_path / "missing.wav", "not found"),
    ):
        with pytest.raises(AudioSourceError, match=reason):
            FileSource(str(path)).open()
    cut = tmp_path / "cut.wav"  # header intact, data cut short: what is there is read
    cut.write_bytes(good.read_bytes()[: 44 + 2 * 1000])
    src = FileSource(str(cut), loop=False, realtime=False)
    src.open()
    assert sum(len(c.samples) for c in src.read()) == 1000


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=2048), keep_header=st.booleans())
def test_fuzz_file_reader(tmp_path: Path, data: bytes, keep_header: bool) -> None:
    """Whatever the bytes, the reader returns audio or refuses with AudioSourceError, never worse."""
    header = b""
    if keep_header:  # a valid WAV header followed by random data reaches the decoder itself
        path = tmp_path / "h.wav"
        soundfile.write(path, np.zeros(8, np.int16), 8000, subtype="PCM_16")
        header = path.read_bytes()[:44]
    path = tmp_path / "fuzz.wav"
    path.write_bytes(header + data)
    src = FileSource(str(path), loop=True, realtime=False)
    try:
        src.open()
        for _ in range(2):
            for chunk in src.read():
                assert chunk.samples.dtype == np.float32
                Analyzer(max(src.sample_rate, 1), window_samples=512).push(chunk)
    except AudioSourceError:
        pass
    finally:
        src.close()


def test_device_refusal_lists_the_devices() -> None:
    devices = [(0, "pulse"), (3, "USB Mic: Audio (hw:2,0)")]
    assert resolve_device("usb mic", devices, 0) == 3
    assert resolve_device("3", devices, 0) == 3
    assert resolve_device("", devices, 0) == 0
    with pytest.raises(
        AudioSourceError, match=r"no input device matches 'webcam'; input devices: 0 'pulse', 3 'USB Mic"
    ):
        resolve_device("webcam", devices, 0)
    with pytest.raises(AudioSourceError, match="no input device with index 7"):
        resolve_device("7", devices, 0)
    with pytest.raises(AudioSourceError, match="no default input device; input devices: none"):
        resolve_device("", [], -1)


def test_auto_is_the_generator_without_a_capture_device() -> None:
    src = make_source(
        source_type="auto",
        spec="",
        sample_rate=48000,
        channels=1,
        block_size=512,
        generator="click",
        bpm=120.0,
        level_dbfs=-12.0,
        tone_hz=440.0,
        loop=True,
        realtime=True,
        stall_timeout_s=2.0,
    )
    assert isinstance(src, DeviceSource) == has_input_device()


def test_device_callback_counts_only_proven_drops_and_full_queues() -> None:
    """The callback's accounting, driven with PortAudio-shaped arguments (ADC times in seconds)
    whose capture times jitter by up to 40 ms as a sound server's do: no drop is counted for it,
    a 0.5 s hole that the next blocks confirm is, and so are the overflow flag and a full queue."""
    # (the thread runs late and hands over a backlog: tested in test_sample_clock_*)
    rng = np.random.default_rng(3)
    now = [50_000_000_000]
    src = DeviceSource("x", 1000, 1, block_size=100, queue_s=0.4, clock=lambda: now[0])
    ok = types.SimpleNamespace(input_overflow=False, input_underflow=False)
    block = np.ones((100, 1), np.float32)
    adc = [1.0]

    def call(status: object = ok, advance: float = 0.1) -> None:
        latency = 0.05 + float(rng.uniform(0.0, 0.04))  # the buffer's age as the server reports it
        src._callback(
            block, 100, types.SimpleNamespace(inputBufferAdcTime=adc[0], currentTime=adc[0] + latency), status
        )
        adc[0] += advance
        now[0] += int(advance * 1e9)

    stamps = []
    for _ in range(60):  # 6 s of jittery blocks
        call()
        stamps += [s for _, s, _ in src._queue]
        src._queue.clear()
    assert src.dropped_samples == 0 and src._index == 6000
    assert all(b - a > 0 for a, b in itertools.pairwise(stamps))
    assert max(abs(b - a - 100_000_000) for a, b in itertools.pairwise(stamps[10:])) < 5_000_000
    adc[0] += 0.5  # half a second the device never delivered
    now[0] += 500_000_000
    placed = []
    for _ in range(7):  # proven once more samples arrived than the lead: a backlog would catch up
        call()
        placed += [i for i, _, _ in src._queue]
        src._queue.clear()
    assert src.dropped_samples == 500 and placed == [6000, 6100, 6200, 6300, 6400, 6500, 7100]
    call(types.SimpleNamespace(input_overflow=True, input_underflow=False), advance=0.2)
    assert (src.dropped_samples, src.overflows, src.underflows) == (600, 1, 0)
    for _ in range(3):  # the queue holds 4 blocks: the fifth is dropped, and counted
        call()
    assert src._queue[0][0] == 7300 and len(src._queue) == 4
    call()
    assert src.dropped_samples == 700 and len(src._queue) == 4
    src._queue.clear()
    # an underflow block is PortAudio's silence for missing input: counted, the index stays whole
    call(types.SimpleNamespace(input_overflow=False, input_underflow=True))
    assert (src.underflows, src.dropped_samples) == (1, 700)
    assert [i for i, _, _ in src._queue] == [7800]


def test_sample_clock_ignores_latency_steps_and_late_threads() -> None:
    """PulseAudio's reported ADC latency steps by 40-130 ms when a stream starts into the sink
    (measured here through ALSA's pulse plugin), and a busy interpreter hands over a 300 ms backlog
    at once: neither loses a sample, so neither is a drop; the stamps stay monotonic."""
    clock = SampleClock(48000)
    stamps, lost = [], 0
    for i in range(1000):
        host = 10.0 + (i + 1) * 512 / 48000
        adc_shift = 0.13 if i >= 300 else 0.0  # the latency step
        late = max(0.0, 0.3 - (i - 600) * 512 / 48000) if 600 <= i < 640 else 0.0  # a backlog
        adc_ns, arrival_ns = int(1e9 * (host + adc_shift - 0.02)), int(1e9 * (host + late))
        r = clock.observe(i * 512, adc_ns, 512, arrival_ns=arrival_ns)
        stamps.append(r.stamp_ns)
        lost += r.lost
    assert lost == 0
    assert all(b > a for a, b in itertools.pairwise(stamps))


def test_sample_clock_without_adc_times_follows_host_time_bursts() -> None:
    """Host time alone (no ADC times): blocks arriving in bursts of four read as jitter, not
    drops, and the stamps step by one block each."""
    clock = SampleClock(48000)
    stamps, lost = [], 0
    for i in range(400):
        burst_end = (i // 4 + 1) * 4 * 512 / 48000
        r = clock.observe(i * 512, int(1e9 * (10.0 + burst_end)), 512)
        stamps.append(r.stamp_ns)
        lost += r.lost
    assert lost == 0
    steps = np.diff(stamps[20:])
    assert np.all(steps > 0) and abs(steps.mean() - 512 / 48000 * 1e9) < 1e5


@pytest.mark.parametrize("realtime", [True, False])
@pytest.mark.parametrize("loop", [True, False])
def test_file_source_plays_from_the_first_read(tmp_path: Path, loop: bool, realtime: bool) -> None:
    """The defaults (loop, realtime) included: the first read after open has nothing due yet and
    must not end the file; every mode then plays it, with stamps rising with the sample index."""
    sr = 8000
    path = tmp_path / "clip.wav"
    soundfile.write(path, render("click", sr, 0.5), sr)
    now = [7_000_000_000]
    src = FileSource(str(path), loop=loop, realtime=realtime, block_size=256, clock=lambda: now[0])
    src.open()
    chunks: list[Chunk] = []
    for _ in range(20):
        try:
            chunks += src.read()
        except EndOfStream:
            assert not loop
            break
        now[0] += int(0.1e9 * (1.0 + float(np.sin(len(chunks)))))  # uneven reads
    got = sum(len(c.samples) for c in chunks)
    assert got >= 4000 if not loop else got > 4000
    assert [c.first_sample_index for c in chunks] == list(
        itertools.accumulate([0] + [len(c.samples) for c in chunks[:-1]])
    )
    for c in chunks:  # every stamp is the open time plus the sample index
        assert c.capture_ns == 7_000_000_000 + int(c.first_sample_index * 1e9 / sr)


def test_generator_stamps_rise_with_the_sample_index() -> None:
    now = [1_000_000_000]
    src = GeneratorSource("drums", 16000, 512, clock=lambda: now[0])
    src.open()
    chunks: list[Chunk] = []
    for k in range(30):
        now[0] += int(0.05e9 * (1.0 + 0.9 * np.sin(k)))
        chunks += src.read()
    stamps = [c.capture_ns for c in chunks]
    assert all(b > a for a, b in itertools.pairwise(stamps))
    assert all(c.capture_ns == 1_000_000_000 + int(c.first_sample_index * 1e9 / 16000) for c in chunks)
