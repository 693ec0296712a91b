"""`model`: deploys a model file to a running node by setting its parameter, then verifies it.

The node's parameter services are reached through the `parameters` service the host puts in the
driver's Context (a RemoteParameters: ready, get/set with timeouts), so this module stays ROS-free.
A deploy is done only when the node accepted the new value and reports it back on a fresh read.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol

from krystal.devices.driver import ERROR, OK, Context, DeviceGone, Opened, Outcome, Reading
from krystal.devices.schema import Arg, Command


class RemoteParameters(Protocol):
    def ready(self, node: str) -> bool:
        """Whether the node's parameter services are up, without calling them."""

    def get(self, node: str, name: str, timeout_s: float) -> Any:
        """The value; LookupError when the node or parameter cannot be reached."""

    def set(self, node: str, name: str, value: Any, timeout_s: float) -> str | None:
        """None when the node accepted; else its reason. LookupError when unreachable."""


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class ModelDriver:
    options: ClassVar[Sequence[Arg]] = (
        Arg("node", "str", "target node (name or /namespace/name)", default="ascii_renderer"),
        Arg("parameter", "str", "its parameter holding the model path", default="model_path"),
        Arg("suffixes", "str", "allowed file suffixes, comma-separated; empty: any", default=".npz"),
        Arg("call_timeout_s", "float", "parameter service call timeout", 0.1, 60.0, default=1.0),
    )

    def __init__(self, options: dict[str, Any], context: Context) -> None:
        self._opt = options
        params = context.services.get("parameters")
        if params is None:
            raise ValueError("the model driver needs the host's parameter client (run it in device_agents)")
        self._params: RemoteParameters = params
        self._node = str(options["node"])
        self._name = str(options["parameter"])
        self._deployed_sha = ""
        self._deployed = ""

    def _reachable(self) -> None:
        # Open and status only look the node up: they may run where its services cannot answer.
        if not self._params.ready(self._node):
            raise DeviceGone(f"node {self._node} is not running (no parameter services)")

    def _get(self) -> str:
        try:
            return str(self._params.get(self._node, self._name, float(self._opt["call_timeout_s"])))
        except LookupError as exc:
            raise DeviceGone(f"node {self._node}: {exc}") from exc

    def open(self) -> Opened:
        self._reachable()
        return Opened(hardware_id=f"{self._node}.{self._name}", message=f"{self._node} reachable")

    def read_status(self) -> Reading:
        self._reachable()
        values = {"model_path": self._deployed, "model_sha256": self._deployed_sha}
        deployed = self._deployed or "nothing deployed yet"
        return Reading(OK, f"{self._node}.{self._name}: {deployed}", values)

    def commands(self) -> Sequence[Command]:
        return (
            Command(
                "deploy",
                (Arg("path", "str", "model file on the target's machine"),),
                "set the node's model parameter and verify it",
            ),
        )

    def apply(self, command: str, args: dict[str, Any]) -> Outcome:
        if command != "deploy":
            raise ValueError(f"unknown command {command}")
        path = str(args["path"])
        suffixes = [s.strip() for s in str(self._opt["suffixes"]).split(",") if s.strip()]
        if path and suffixes and not any(path.endswith(s) for s in suffixes):
            return Outcome(ERROR, f"{path}: not a {' or '.join(suffixes)} file")
        sha = ""
        if path:
            try:
                sha = file_sha256(path)
            except OSError as exc:
                return Outcome(ERROR, f"cannot read {path}: {exc.strerror or exc}")
        timeout_s = float(self._opt["call_timeout_s"])
        try:
            refused = self._params.set(self._node, self._name, path, timeout_s)
        except LookupError as exc:
            raise DeviceGone(f"node {self._node}: {exc}") from exc
        if refused:
            return Outcome(ERROR, f"{self._node} refused {self._name}={path!r}: {refused}")
        reported = self._get()
        if reported != path:
            return Outcome(ERROR, f"{self._node} reports {self._name}={reported!r} after the deploy")
        self._deployed, self._deployed_sha = path, sha
        return Outcome(OK, f"deployed {path or 'the default model'} to {self._node}", {"model_sha256": sha})

    def close(self) -> None:
        pass
