"""The video source's reconnect state machine, and the sessions that open and read sources.

ROS-free. Everything that may block (open, read, decode, release) runs on a session's own thread;
the executor only calls Supervisor.step(), which never blocks, when a session wakes it (the node's
guard condition) or its timer ticks. Times come in as arguments or injected clocks.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from numpy.typing import NDArray

from krystal.backoff import Backoff
from krystal.video.controls import ControlReport
from krystal.video.sources import EndOfStream, FrameSource, SourceError

CLOSE_WAIT_S = 0.25  # a new open waits this long for the previous session's thread to end

IDLE, OPENING, STREAMING, BACKOFF, ENDED = "idle", "opening", "streaming", "backoff", "ended"


@dataclass(frozen=True)
class Frame:
    pixels: NDArray[Any]
    stamp_ns: int  # the node's clock at capture: the header stamp
    captured_s: float  # monotonic clock at capture: the frame's age inside this process
    index: int  # frames this session's source delivered before this one
    render: NDArray[Any] | None = None  # the render-resolution copy, scaled on the capture thread


@dataclass(frozen=True)
class _Opened:
    at_s: float
    controls: ControlReport | None


@dataclass(frozen=True)
class _Failed:
    reason: str
    ended: bool = False  # a file's end: no reopen


@dataclass(frozen=True)
class Report:
    """Something step() saw that the node logs or shows: opening, opened, delivering, failed, ended."""

    kind: str
    text: str
    attempts: int = 0  # failed: this attempt's number; delivering: attempts it took to recover
    wait_s: float = 0.0  # failed: delay before the next open
    controls: ControlReport | None = None  # opened: what the device made of camera_controls


class Reconnect:
    """When to open, when a stream counts as stalled, how long to back off. Times are passed in.

    The stall clock starts when an open completes and restarts with every frame, so a source that
    takes longer than the stall timeout to open is never called stalled for it.
    """

    def __init__(self, initial_s: float, max_s: float, stall_timeout_s: float) -> None:
        self.backoff = Backoff(initial_s, max_s)
        self.stall_timeout_s = stall_timeout_s
        self.state = IDLE
        self.last_frame_s = 0.0
        self.frames = 0  # since the last open

    def may_open(self, now_s: float) -> bool:
        return self.state in (IDLE, BACKOFF) and self.backoff.due(now_s)

    def opening(self) -> None:
        self.state = OPENING

    def opened(self, at_s: float) -> None:
        self.state, self.last_frame_s, self.frames = STREAMING, at_s, 0

    def frame(self, captured_s: float) -> int | None:
        """Record a frame; for the first one after an open, the failed attempts it ends."""
        self.last_frame_s = max(self.last_frame_s, captured_s)
        self.frames += 1
        if self.frames > 1:
            return None
        attempts = self.backoff.attempts
        self.backoff.reset()
        return attempts

    def stalled_for(self, now_s: float) -> float | None:
        """Seconds without a frame once past the stall timeout, else None."""
        idle_s = now_s - self.last_frame_s
        return idle_s if self.state == STREAMING and idle_s > self.stall_timeout_s else None

    def failed(self, now_s: float) -> float:
        self.state = BACKOFF
        return self.backoff.failed(now_s)

    def ended(self) -> None:
        self.state = ENDED

    def restart(self) -> None:
        self.state = IDLE
        self.backoff.reset()


class RateCap:
    """At most `fps` frames a second on average, for sources that run at their own rate.

    Keeps a schedule, so a 60 fps camera capped at 25 publishes 25 a second, not every other frame;
    a frame up to a quarter period early is admitted (a camera at the cap's own rate jitters).
    """

    def __init__(self, fps: float) -> None:
        self.period_s = 1.0 / fps
        self._due_s: float | None = None

    def admit(self, now_s: float) -> bool:
        due = self._due_s
        if due is not None and now_s < due - 0.25 * self.period_s:
            return False
        on_schedule = due is not None and now_s < due + self.period_s
        self._due_s = (due if on_schedule and due is not None else now_s) + self.period_s
        return True


Event = Frame | _Opened | _Failed


class Session:
    """One open of one source on its own thread, never reused: opens, reads, paces, closes.

    Keeps only the newest unread frame. Any exception ends the session with a reason, never silently.
    """

    def __init__(
        self,
        source: FrameSource,
        notify: Callable[[], None],
        period_s: Callable[[], float],
        clock: Callable[[], float] = time.monotonic,
        stamp_clock: Callable[[], int] = time.time_ns,
        *,
        derive: Callable[[NDArray[Any]], NDArray[Any] | None] | None = None,
    ) -> None:
        self.source = source
        self.derive = derive  # the render feed's scaling: here, once, off the executor
        self.stop = threading.Event()
        self._notify, self._period_s = notify, period_s
        self._clock, self._stamp_clock = clock, stamp_clock
        self._lock = threading.Lock()
        self._inbox: deque[Event] = deque()
        self.thread = threading.Thread(target=self._run, name=f"video {source.description}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def take(self) -> list[Event]:
        with self._lock:
            events = list(self._inbox)
            self._inbox.clear()
        return events

    def _post(self, event: Event) -> None:
        with self._lock:
            if isinstance(event, Frame) and self._inbox and isinstance(self._inbox[-1], Frame):
                self._inbox[-1] = event  # superseded before anyone took it
            else:
                self._inbox.append(event)
        try:
            self._notify()
        except Exception:  # the node is gone: nobody to wake
            self.stop.set()

    def _derived(self, pixels: NDArray[Any]) -> NDArray[Any] | None:
        """The render copy, or None (off, or a frame it cannot scale: the full frame still goes)."""
        if self.derive is None:
            return None
        try:
            return self.derive(pixels)
        except Exception:  # the node reports frames it cannot publish; the capture goes on
            return None

    def _run(self) -> None:
        source = self.source
        try:
            source.open()
            self._post(_Opened(self._clock(), getattr(source, "controls_report", None)))
            index, next_s = 0, self._clock()
            while not self.stop.is_set():
                pixels = source.read()
                if self.stop.is_set():
                    break
                stamp_ns, captured_s = self._stamp_clock(), self._clock()
                self._post(Frame(pixels, stamp_ns, captured_s, index, self._derived(pixels)))
                index += 1
                if source.paced:
                    period_s = self._period_s()
                    next_s += period_s
                    delay_s = next_s - self._clock()
                    if delay_s < -period_s:  # fell behind (a slow decode): no burst to catch up
                        next_s = self._clock()
                    elif delay_s > 0:
                        self.stop.wait(delay_s)
        except EndOfStream as exc:
            self._post(_Failed(str(exc), ended=True))
        except SourceError as exc:
            self._post(_Failed(str(exc)))
        except Exception as exc:  # a bug or an unexpected backend error must not end the thread silently
            self._post(_Failed(f"{source.description} failed: {type(exc).__name__}: {exc}"))
        finally:
            try:
                source.close()  # here: a release can block as long as a read on a dead stream
            except Exception as exc:
                self._post(_Failed(f"closing {source.description} failed: {type(exc).__name__}: {exc}"))


class Supervisor:
    """Runs one source at a time through sessions, reopening it with backoff when it fails or stalls.

    A new session never starts while the previous one's thread is alive (a read blocked on a dead
    device), whatever replaced the source: a device is never opened twice and threads never pile up.
    """

    def __init__(
        self,
        make_source: Callable[[], FrameSource],
        notify: Callable[[], None],
        *,
        fps: float = 30.0,
        reconnect_initial_s: float = 0.5,
        reconnect_max_s: float = 8.0,
        stall_timeout_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        stamp_clock: Callable[[], int] = time.time_ns,
        close_wait_s: float = CLOSE_WAIT_S,
        derive: Callable[[NDArray[Any]], NDArray[Any] | None] | None = None,
    ) -> None:
        self._make_source, self._notify = make_source, notify
        self.derive = derive  # read by each new session; its result may change at run time
        self.period_s = 1.0 / fps
        self.reconnect = Reconnect(reconnect_initial_s, reconnect_max_s, stall_timeout_s)
        self._clock, self._stamp_clock = clock, stamp_clock
        self.close_wait_s = close_wait_s
        self.session: Session | None = None
        self._previous: Session | None = None
        self._closing_since_s: float | None = None
        self.opens = 0
        self.description = ""

    def set_fps(self, fps: float) -> None:
        self.period_s = 1.0 / fps  # read by the running session before each wait

    def set_backoff(self, initial_s: float, max_s: float) -> None:
        self.reconnect.backoff = Backoff(initial_s, max_s)

    def replace(self, make_source: Callable[[], FrameSource], stall_timeout_s: float) -> None:
        """A new source (parameters changed): the current session is stopped, never waited for."""
        self._abandon()
        self._make_source = make_source
        self.reconnect.stall_timeout_s = stall_timeout_s
        self.reconnect.restart()

    def step(self, now_s: float) -> tuple[list[Report], Frame | None]:
        """Take what the session delivered, check for a stall, open when due. Never blocks."""
        reports: list[Report] = []
        frame: Frame | None = None
        session = self.session
        if session is not None:
            for event in session.take():
                if isinstance(event, Frame):
                    frame = event
                    recovered = self.reconnect.frame(event.captured_s)
                    if recovered is not None:
                        reports.append(Report("delivering", f"{self.description} delivers", recovered))
                elif isinstance(event, _Opened):
                    self.reconnect.opened(event.at_s)
                    self.opens += 1
                    reports.append(Report("opened", f"opened {self.description}", controls=event.controls))
                elif event.ended:
                    self._abandon()
                    self.reconnect.ended()
                    reports.append(Report("ended", event.reason))
                    break
                else:
                    self._fail(now_s, event.reason, reports)
                    break
            idle_s = self.reconnect.stalled_for(now_s)
            if idle_s is not None and self.session is not None:
                self._fail(now_s, f"{self.description} stalled: no frame for {idle_s:.1f} s", reports)
        if self.session is None and self.reconnect.may_open(now_s):
            self._open(now_s, reports)
        return reports, frame

    def _fail(self, now_s: float, reason: str, reports: list[Report]) -> None:
        self._abandon()
        wait_s = self.reconnect.failed(now_s)
        reports.append(Report("failed", reason, self.reconnect.backoff.attempts, wait_s))

    def _abandon(self) -> None:
        session, self.session = self.session, None
        if session is not None:
            session.stop.set()
            self._previous = session

    def _open(self, now_s: float, reports: list[Report]) -> None:
        previous = self._previous
        if previous is not None and previous.thread.is_alive():
            if self._closing_since_s is None:
                self._closing_since_s = now_s
            if now_s - self._closing_since_s < self.close_wait_s:
                return  # it is ending: ask again at the next step
            self._closing_since_s = None
            reason = f"the previous capture of {previous.source.description} has not closed yet"
            self._fail(now_s, reason, reports)
            return
        self._previous = self._closing_since_s = None
        try:
            source = self._make_source()
        except (SourceError, ValueError) as exc:
            self._fail(now_s, str(exc), reports)
            return
        self.description = source.description
        session = Session(
            source, self._notify, lambda: self.period_s, self._clock, self._stamp_clock, derive=self.derive
        )
        self.session = session
        self.reconnect.opening()
        session.start()
        reports.append(Report("opening", f"opening {source.description}"))

    def close(self, wait_s: float = CLOSE_WAIT_S) -> None:
        """Stop the session; wait at most `wait_s` for its thread (a blocked read ends on its own)."""
        self._abandon()
        previous = self._previous
        if previous is not None:
            previous.thread.join(wait_s)

    def alive_threads(self) -> int:
        """Session threads still running: at most one after any sequence of replaces and failures."""
        return sum(s is not None and s.thread.is_alive() for s in (self.session, self._previous))
