"""Benchmark output: one JSON object per line, ours beside the anchor measured in the same run."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any


def time_ms(fn: Callable[[], Any], repeat: int = 30, warmup: int = 3) -> tuple[float, float]:
    """(min, median) wall time of fn() in milliseconds."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
    samples.sort()
    return samples[0], samples[len(samples) // 2]


def emit(
    bench: str,
    case: str,
    ours: float,
    anchor: float,
    unit: str,
    *,
    lower_is_better: bool = True,
    **extra: Any,
) -> None:
    """Print one result; ratio > 1 means we are better than the anchor."""
    ratio = (
        (anchor / ours if ours else float("inf"))
        if lower_is_better
        else (ours / anchor if anchor else float("inf"))
    )
    print(
        json.dumps(
            {
                "bench": bench,
                "case": case,
                "ours": round(ours, 4),
                "anchor": round(anchor, 4),
                "ratio": round(ratio, 3),
                "unit": unit,
                **extra,
            }
        ),
        flush=True,
    )


def graph_env(state_dir: Path | None = None) -> dict[str, str]:
    """This process's environment for a graph of its own: a ROS_DOMAIN_ID no other run holds
    (krystal.domain), discovery on this host only, the shipped transport profile, and `state_dir`
    for the nodes' logs (XDG_STATE_HOME) so a benchmark never writes into the user's."""
    from krystal.domain import isolated_domain_id
    from krystal.paths import transport_env
    from krystal.ros.compat import localhost_discovery_env

    env = dict(os.environ, **localhost_discovery_env())
    env["ROS_DOMAIN_ID"] = isolated_domain_id()
    env.update(transport_env(env))
    if state_dir is not None:
        env["XDG_STATE_HOME"] = str(state_dir)
    return env


def dies_with_us(env: Mapping[str, str]) -> dict[str, str]:
    """`env` for a node executable this process starts directly: the node asks the kernel to stop it
    when this process dies (krystal.ros.entry), so a benchmark killed by a test's timeout, whose
    cleanup never runs, leaves no graph publishing on the test run's domain."""
    from krystal.supervise.children import SUPERVISOR_ENV

    return {**env, SUPERVISOR_ENV: str(os.getpid())}


@contextlib.contextmanager
def processes(
    commands: Sequence[Sequence[str]], env: Mapping[str, str], log: IO[str] | None = None
) -> Iterator[list[subprocess.Popen[str]]]:
    """Start `commands`, each in a session of its own; on exit (errors too) stop each session as
    Ctrl-C would, then SIGKILL whatever is left after 5 s, so no node outlives the benchmark."""
    out = log if log is not None else subprocess.DEVNULL
    procs: list[subprocess.Popen[str]] = []
    try:
        for command in commands:
            procs.append(
                subprocess.Popen(
                    list(command), env=dict(env), stdout=out, stderr=out, start_new_session=True, text=True
                )
            )
        yield procs
    finally:
        for p in reversed(procs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGINT)
        for p in reversed(procs):
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=5)
            with contextlib.suppress(ProcessLookupError):  # the session's other processes too
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()
