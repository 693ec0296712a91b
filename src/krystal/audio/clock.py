"""The sample clock: capture times from the sample index through a line fitted to what the device says.

A sound server's per-block capture times (PortAudio's inputBufferAdcTime mapped onto the system
clock, or the host time of the callback) jitter by milliseconds to tens of milliseconds and may
step when its latency changes; the sample count does not. So a block's stamp is
`offset + index / rate`, where `offset` follows the observed times slowly, and a drop is counted
only when the blocks' arrival times stay ahead of the index for longer than jitter or a backlog
can explain. Stamps never go backwards.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ClockReading:
    stamp_ns: int  # the block's first sample on the fitted clock
    lost: int  # samples the clock (or the device's overflow flag) proves lost just before the block
    residual_ns: int  # observed minus fitted time, for diagnostics


class _Line:
    """`time = offset + index * ns_per_sample` followed by a running mean of the residuals over the
    first `warmup` observations, then an exponential one of weight `alpha`, in bounded steps, and
    their mean absolute size (jitter)."""

    def __init__(self, ns_per_sample: float, alpha: float, warmup: int) -> None:
        self.ns_per_sample, self.alpha, self.warmup = ns_per_sample, alpha, warmup
        self.offset_ns = 0.0
        self.jitter_ns = 0.0
        self.n = 0

    def residual(self, index: int, t_ns: int) -> float:
        if self.n == 0:
            return 0.0
        return t_ns - (self.offset_ns + index * self.ns_per_sample)

    def update(self, index: int, t_ns: int, max_step_ns: float) -> None:
        if self.n == 0:
            self.offset_ns = t_ns - index * self.ns_per_sample
            self.n = 1
            return
        r = self.residual(index, t_ns)
        self.n += 1
        weight = 1.0 / self.n if self.n <= self.warmup else self.alpha
        self.offset_ns += max(-max_step_ns, min(max_step_ns, weight * r))
        self.jitter_ns += weight * (abs(r) - self.jitter_ns)

    def at(self, index: int) -> float:
        return self.offset_ns + index * self.ns_per_sample


class SampleClock:
    """Stamps from the sample index through a line fitted to the observed capture times (ADC time
    mapped onto the system clock, or host time); drops proven by the arrival (host) times.

    A sound server may shift its reported ADC latency by tens of milliseconds when a stream
    starts (PulseAudio through ALSA's pulse plugin does): the stamp line absorbs that slowly and
    counts nothing. A loss shows as arrivals that stay ahead of the index line: it is counted
    once the lead exceeds `min_gap_s`, `jitter_factor` mean absolute residuals and two blocks,
    and has held while more samples arrived than the largest lead (a late thread delivering a
    backlog catches up within that). `alpha` (arrivals) and `stamp_alpha` (stamps): the weight
    of a new observation after a running mean over the first `1 / alpha` blocks.
    """

    def __init__(
        self,
        sample_rate: int,
        *,
        min_gap_s: float = 0.1,
        jitter_factor: float = 6.0,
        alpha: float = 0.02,
        stamp_alpha: float = 0.002,
    ) -> None:
        self.ns_per_sample = 1e9 / sample_rate
        self.min_gap_ns = min_gap_s * 1e9
        self.jitter_factor = jitter_factor
        # the stamps follow slowly: the device's clock drifts from the system's by parts per million,
        # while the observed times carry the callback's scheduling delay and latency steps
        self.stamps = _Line(self.ns_per_sample, stamp_alpha, round(1 / stamp_alpha))
        self.arrivals = _Line(self.ns_per_sample, alpha, round(1 / alpha))
        self._lead_since: int | None = None  # index where the arrivals began to lead
        self._lead_ns = self._lead_max_ns = 0.0  # the smallest and largest lead since then
        self._last_stamp = -1

    @property
    def jitter_ns(self) -> float:
        return self.arrivals.jitter_ns

    def observe(
        self, index: int, observed_ns: int, frames: int, overflow: bool = False, arrival_ns: int | None = None
    ) -> ClockReading:
        """The stamp of the block starting at sample `index` (before any loss is added to it),
        captured at `observed_ns` and handed over at `arrival_ns` (default: `observed_ns`), and
        the samples lost before it."""
        arrival = observed_ns if arrival_ns is None else arrival_ns
        block_ns = frames * self.ns_per_sample
        lead = self.arrivals.residual(index, arrival)
        threshold = max(self.min_gap_ns, self.jitter_factor * self.arrivals.jitter_ns, 2.0 * block_ns)
        lost = 0
        if self.arrivals.n and lead > threshold:
            if self._lead_since is None:
                self._lead_since, self._lead_ns, self._lead_max_ns = index, lead, lead
            self._lead_ns, self._lead_max_ns = min(self._lead_ns, lead), max(self._lead_max_ns, lead)
            # a backlog shrinks by a block per block and is gone once its own length has arrived
            if (index - self._lead_since) * self.ns_per_sample > self._lead_max_ns:
                # devices drop whole buffers: round the lead to blocks (known only within the jitter)
                lost = frames * round(self._lead_ns / block_ns)
                self._lead_since = None
        else:
            self._lead_since = None
        if overflow and not lost:  # the device says input was discarded; the clock cannot say how much
            lost = frames
        index += lost
        if self._lead_since is None:  # a lead not yet judged stays out of the fit
            self.arrivals.update(index, arrival, 0.25 * block_ns)
        residual = self.stamps.residual(index, observed_ns)
        self.stamps.update(index, observed_ns, 0.25 * block_ns)
        stamp = max(int(self.stamps.at(index)), self._last_stamp + 1)
        self._last_stamp = stamp
        return ClockReading(stamp, lost, int(residual))
