"""Helpers of the multi-host tests (tests/test_hosts.py) and the soak bench: nodes and probes on
test hosts (krystal.hosts), and what the probes saw."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from krystal.hosts import Hosts

ROOT = Path(__file__).resolve().parent.parent
PARAMS = str(ROOT / "config" / "krystal.yaml")


def node_exe(name: str) -> str:
    from ament_index_python.packages import get_package_prefix

    return str(Path(get_package_prefix("krystal")) / "lib" / "krystal" / name)


def node_argv(name: str, **params: object) -> list[str]:
    """The installed executable of a node with the shipped parameters file and `-p` overrides."""
    argv = [node_exe(name), "--ros-args", "--params-file", PARAMS, "--log-level", "warn"]
    for key, value in params.items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        argv += ["-p", f"{key}:={text}"]
    return argv


def probe_argv(seconds: float, *args: str) -> list[str]:
    return [sys.executable, "-m", "krystal.ros.probe", "--seconds", str(seconds), *args]


@dataclass
class ProbeResult:
    lines: list[dict[str, Any]] = field(default_factory=list)
    stderr: str = ""

    @property
    def summary(self) -> dict[str, Any]:
        for line in reversed(self.lines):
            if line.get("summary"):
                return dict(line)
        raise AssertionError(f"the probe printed no summary; stderr:\n{self.stderr[-2000:]}")

    def timeline(self) -> list[dict[str, Any]]:
        return [line for line in self.lines if "frames" in line and not line.get("summary")]

    def diag_events(self, name: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line.get("diag") == name]


def run_probe(
    hosts: Hosts, host: str, seconds: float, *args: str, env: Mapping[str, str] | None = None
) -> ProbeResult:
    """Run a probe on `host` for `seconds` and return what it printed."""
    popen = hosts.start(
        host, probe_argv(seconds, *args), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = popen.communicate(timeout=seconds + 60)
    return ProbeResult([json.loads(line) for line in out.splitlines() if line.startswith("{")], err)


@contextmanager
def started_probe(
    hosts: Hosts, host: str, seconds: float, *args: str, env: Mapping[str, str] | None = None
) -> Iterator[subprocess.Popen[str]]:
    """A probe running in the background while the caller acts (then read with `finish_probe`)."""
    popen = hosts.start(
        host, probe_argv(seconds, *args), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    yield popen


def finish_probe(popen: subprocess.Popen[str], timeout_s: float) -> ProbeResult:
    out, err = popen.communicate(timeout=timeout_s)
    return ProbeResult([json.loads(line) for line in out.splitlines() if line.startswith("{")], err)


def start_nodes(hosts: Hosts, host: str, nodes: Sequence[tuple[str, Mapping[str, object]]], log_dir: Path,
                env: Mapping[str, str] | None = None) -> list[subprocess.Popen[str]]:  # fmt: skip
    """Start each (node name, parameters) on `host`; stderr to `<log_dir>/<host>-<node>.log`."""
    started = []
    if env is None:  # state files (decision log, audit log, uuids) inside the test's folder
        env = hosts.env({"XDG_STATE_HOME": str(log_dir / "state")})
    for name, params in nodes:
        with open(log_dir / f"{host}-{name}.log", "a") as log:
            started.append(
                hosts.start(host, node_argv(name, **dict(params)), env=env, stdout=log, stderr=log)
            )
    return started


def logs(log_dir: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(log_dir.glob("*.log")))
