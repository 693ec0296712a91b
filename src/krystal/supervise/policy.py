"""When a dead node is started again, and when the supervisor stops trying. No ROS, no processes:
times are passed in (any monotonic clock), so the policy is tested without waiting."""

from __future__ import annotations

from dataclasses import dataclass

from krystal.backoff import Backoff


@dataclass(frozen=True)
class Verdict:
    """What to do after a death: restart at `restart_at_s`, or give up (None) for `reason`."""

    restart_at_s: float | None
    fast_failures: int
    reason: str


class RestartPolicy:
    """Restart with the shared backoff (initial, doubled, capped); a run that lasted `fast_s` or more
    was healthy, so its death starts the count and the backoff afresh. After `max_fast_failures`
    deaths in a row that each came sooner than `fast_s` after their start, give up: a node that
    cannot stay up (a bad parameter, a missing library) must not be restarted forever."""

    def __init__(
        self, initial_s: float = 0.5, max_s: float = 8.0, fast_s: float = 10.0, max_fast_failures: int = 5
    ) -> None:
        if max_fast_failures < 1 or fast_s < 0 or initial_s < 0 or max_s < initial_s:
            raise ValueError("need max_fast_failures >= 1, fast_s >= 0, 0 <= initial_s <= max_s")
        self.backoff = Backoff(initial_s, max_s)
        self.fast_s = fast_s
        self.max_fast_failures = max_fast_failures
        self.fast_failures = 0
        self.started_at_s = 0.0

    def started(self, now_s: float) -> None:
        self.started_at_s = now_s

    def died(self, now_s: float) -> Verdict:
        ran_s = now_s - self.started_at_s
        if ran_s >= self.fast_s:
            self.fast_failures = 0
            self.backoff.reset()
        else:
            self.fast_failures += 1
        if self.fast_failures >= self.max_fast_failures:
            return Verdict(
                None,
                self.fast_failures,
                f"gave up after {self.fast_failures} deaths in a row, "
                f"each within {self.fast_s:g} s of its start",
            )
        wait_s = self.backoff.failed(now_s)
        return Verdict(now_s + wait_s, self.fast_failures, f"restart in {wait_s:.1f} s")
