"""The sample clock: capture times from the sample index through a line fitted to what the device says.

A sound server's per-block capture times (PortAudio's inputBufferAdcTime mapped onto the system
clock, or the host time of the callback) jitter by milliseconds to tens of milliseconds; the
sample count does not. So a block's stamp is `offset + index / rate`, where `offset` follows the
observed times slowly (a running mean, then an exponential one), and a drop is counted only when
the observed time runs ahead of the line by more than the jitter allows on two blocks in a row
(a single late block is jitter). Stamps never go backwards.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ClockReading:
    stamp_ns: int  # the block's first sample on the fitted clock
    lost: int  # samples the clock (or the device's overflow flag) proves lost just before the block
    residual_ns: int  # observed minus fitted time, for diagnostics


class SampleClock:
    """Fits `time = offset + index / sample_rate` to (index, observed time) pairs, one per block.

    `min_gap_s`: the smallest lead over the line that can prove a drop (whatever the jitter);
    `jitter_factor`: how many mean absolute residuals a lead must also exceed; `alpha`: the weight
    of a new observation once the running mean has `1 / alpha` of them.
    """

    def __init__(
        self,
        sample_rate: int,
        *,
        min_gap_s: float = 0.1,
        jitter_factor: float = 6.0,
        alpha: float = 0.02,
    ) -> None:
        self.ns_per_sample = 1e9 / sample_rate
        self.min_gap_ns = min_gap_s * 1e9
        self.jitter_factor, self.alpha = jitter_factor, alpha
        self.offset_ns = 0.0  # fitted time of sample index 0
        self.jitter_ns = 0.0  # mean absolute residual
        self.observations = 0
        self._pending_ns: float | None = None  # a lead seen once, not yet proven
        self._last_stamp = -1

    def observe(self, index: int, observed_ns: int, frames: int, overflow: bool = False) -> ClockReading:
        """The stamp of the block starting at sample `index` (before any loss is added to it) that
        was observed at `observed_ns`, and the samples lost before it."""
        if self.observations == 0:
            self.offset_ns = observed_ns - index * self.ns_per_sample
            self.observations = 1
            return self._reading(index, 0, 0.0)
        block_ns = frames * self.ns_per_sample
        residual = observed_ns - (self.offset_ns + index * self.ns_per_sample)
        threshold = max(self.min_gap_ns, self.jitter_factor * self.jitter_ns, 2.0 * block_ns)
        lost = 0
        if residual > threshold:
            if self._pending_ns is None and not overflow:
                self._pending_ns = residual  # once is jitter until the next block agrees
                return self._reading(index, 0, residual)
            # devices drop whole buffers: round the lead to blocks (it is only known within the jitter)
            lost = frames * round(min(residual, self._pending_ns or residual) / block_ns)
            residual -= lost * self.ns_per_sample
        elif overflow:  # the device says input was discarded; the clock could not say how much
            lost = frames
            residual -= lost * self.ns_per_sample
        self._pending_ns = None
        self.observations += 1
        weight = max(self.alpha, 1.0 / self.observations)
        # a bounded step keeps the stamps rising by about a block per block
        self.offset_ns += max(-0.25 * block_ns, min(0.25 * block_ns, weight * residual))
        self.jitter_ns += weight * (abs(residual) - self.jitter_ns)
        return self._reading(index + lost, lost, residual)

    def _reading(self, index: int, lost: int, residual: float) -> ClockReading:
        stamp = max(int(self.offset_ns + index * self.ns_per_sample), self._last_stamp + 1)
        self._last_stamp = stamp
        return ClockReading(stamp, lost, int(residual))
