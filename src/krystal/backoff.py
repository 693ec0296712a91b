"""Reconnect delays shared by every room that reopens something (video, audio, devices); no ROS, no cv2."""

from __future__ import annotations


class Backoff:
    """Delays between reconnect attempts: initial, doubled each failure, capped; reset on success."""

    def __init__(self, initial_s: float = 0.5, max_s: float = 8.0) -> None:
        self.initial_s, self.max_s = initial_s, max_s
        self.delay_s = initial_s
        self.attempts = 0
        self.next_attempt_s = 0.0

    def failed(self, now_s: float) -> float:
        self.attempts += 1
        wait = self.delay_s
        self.next_attempt_s = now_s + wait
        self.delay_s = min(self.max_s, self.delay_s * 2)
        return wait

    def due(self, now_s: float) -> bool:
        return now_s >= self.next_attempt_s

    def reset(self) -> None:
        self.delay_s, self.attempts, self.next_attempt_s = self.initial_s, 0, 0.0
