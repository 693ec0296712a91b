"""Device agent core without DDS: schemas, commands and their audit lines, faults, drivers, plug-ins."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from krystal.devices.agent import Agent, DeviceConfig, Timing, check_reading
from krystal.devices.audit import AuditLog, read_audit
from krystal.devices.driver import BUILTIN, ERROR, OK, Reading, available, find_driver
from krystal.devices.drivers.simulated import SimulatedDriver
from krystal.devices.registry import Entry, Registry
from krystal.devices.schema import Arg, Command, SchemaError, parse_options, validate
from krystal.devices.store import UuidStore, state_dir

FAST = Timing(call_timeout_s=1.0, command_timeout_s=0.5, reconnect_initial_s=0.05, reconnect_max_s=0.2)


def make_agent(tmp_path: Path, options: tuple[str, ...] = (), driver: Any = SimulatedDriver) -> Agent:
    audit = AuditLog(tmp_path / "audit.jsonl")
    config = DeviceConfig("sim0", "simulated", "fan", options=options)
    return Agent(config, driver, "00000000-0000-4000-8000-000000000000", timing=FAST, audit=audit)


def active_agent(tmp_path: Path, options: tuple[str, ...] = ()) -> Agent:
    agent = make_agent(tmp_path, options)
    assert agent.configure() is None
    agent.activate()
    return agent


def commands_in(path: Path) -> list[dict[str, Any]]:
    return [r for r in read_audit(path) if r["type"] == "command"]


def wait_for(predicate: Any, timeout_s: float = 5.0, step: Any = None) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if step is not None:
            step()
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())


# -- schema -------------------------------------------------------------------------------------


def test_schema_types_ranges_and_states() -> None:
    cmd = Command(
        "set", (Arg("rate_hz", "float", min_value=0, max_value=10), Arg("on", "bool", default=True))
    )
    assert validate([cmd], "set", {"rate_hz": "2.5"}, "active").args == {"rate_hz": 2.5, "on": True}
    for args, reason in [
        ({"rate_hz": "11"}, "above 10"),
        ({"rate_hz": "fast"}, "not a number"),
        ({"rate_hz": "nan"}, "not a finite number"),
        ({}, "missing argument rate_hz"),
        ({"rate_hz": "1", "on": "maybe"}, "not a boolean"),
        ({"rate_hz": "1", "colour": "red"}, r"unknown argument\(s\) colour"),
    ]:
        with pytest.raises(SchemaError, match=reason):
            validate([cmd], "set", args, "active")
    with pytest.raises(SchemaError, match="needs the device active, it is inactive"):
        validate([cmd], "set", {"rate_hz": "1"}, "inactive")
    with pytest.raises(SchemaError, match="unknown command 'jump'"):
        validate([cmd], "jump", {}, "active")


def test_options_from_config_items() -> None:
    opts = parse_options(SimulatedDriver.options, ["fault=bad_values", "hang_s = 2"])
    assert opts["fault"] == "bad_values" and opts["hang_s"] == 2.0 and opts["present_file"] == ""
    with pytest.raises(SchemaError, match="not key=value"):
        parse_options(SimulatedDriver.options, ["fault"])
    with pytest.raises(SchemaError, match="not one of"):
        parse_options(SimulatedDriver.options, ["fault=fire"])


# -- commands and the audit log ---------------------------------------------------------------


def test_commands_good_and_bad_with_audit_lines(tmp_path: Path) -> None:
    agent = active_agent(tmp_path)
    ok = agent.command("set_speed", [("speed_percent", "55")], command_id="c1", caller="op")
    assert ok.accepted and ok.level == OK and agent.values["speed_percent"] == "30.0"
    agent.poll()
    assert agent.values["speed_percent"] == "55.0"
    cases = [
        ("dance", [], "unknown command 'dance'"),
        ("set_speed", [("speed_percent", "101")], "above 100"),
        ("set_speed", [("speed_percent", "fast")], "not a number"),
        ("set_speed", [("speed_percent", "1"), ("speed_percent", "2")], "given twice"),
    ]
    for name, args, reason in cases:
        answer = agent.command(name, args, caller="op")
        assert not answer.accepted and answer.level == ERROR and reason in answer.message
    # the same id again: the first answer, not a second run
    again = agent.command("set_speed", [("speed_percent", "55")], command_id="c1", caller="op")
    assert again == ok and agent.values["commands_applied"] == "1"
    reused = agent.command("set_speed", [("speed_percent", "10")], command_id="c1")
    assert not reused.accepted and "already used" in reused.message
    agent.deactivate()
    wrong_state = agent.command("set_speed", [("speed_percent", "5")], command_id="c2")
    assert not wrong_state.accepted and "needs the device active, it is inactive" in wrong_state.message
    lines = commands_in(tmp_path / "audit.jsonl")
    assert len(lines) == 1 + len(cases) + 3
    first = lines[0]
    assert first["caller"] == "op" and first["command_id"] == "c1" and first["accepted"] is True
    assert first["arguments"] == {"speed_percent": "55"} and first["device"] == "sim0" and first["time"] > 0
    assert [line["accepted"] for line in lines[1:5]] == [False] * 4
    assert lines[5]["duplicate"] is True and lines[5]["accepted"] is True
    assert "needs the device active" in lines[-1]["result"] and lines[-1]["state"] == "inactive"


def test_command_timeout_is_abandoned(tmp_path: Path) -> None:
    agent = active_agent(tmp_path, ("slow_command_s=3",))
    assert agent.command("inject_fault", [("fault", "slow_commands")]).accepted
    t0 = time.monotonic()
    answer = agent.command("set_speed", [("speed_percent", "20")], command_id="slow", timeout_s=0.3)
    assert time.monotonic() - t0 < 2.0
    assert not answer.accepted and "did not return within 0.3 s" in answer.message
    assert commands_in(tmp_path / "audit.jsonl")[-1]["result"] == answer.message
    # the agent goes on: a fresh worker serves the next calls
    assert agent.command("inject_fault", [("fault", "none")]).accepted
    assert agent.command("reset", []).accepted


def test_unconfigured_refuses_and_bad_options_fail_configure(tmp_path: Path) -> None:
    agent = make_agent(tmp_path, ("fault=lava",))
    assert not agent.command("set_speed", [("speed_percent", "5")]).accepted
    reason = agent.configure()
    assert reason is not None and "bad driver options" in reason and agent.state == "unconfigured"


# -- faults ---------------------------------------------------------------------------------------


def test_disconnect_error_backoff_and_return(tmp_path: Path) -> None:
    agent = active_agent(tmp_path)
    assert agent.command("inject_fault", [("fault", "disconnect"), ("duration_s", "0.4")]).accepted
    agent.poll()
    assert agent.level == ERROR and not agent.connected and "device lost" in agent.message
    refused = agent.command("set_speed", [("speed_percent", "5")])
    assert not refused.accepted and "disconnected" in refused.message
    assert wait_for(lambda: agent.connected, 5.0, agent.poll)
    assert agent.level == OK and agent.state == "active" and agent.reconnects == 1
    events = [r["event"] for r in read_audit(tmp_path / "audit.jsonl") if r["type"] == "event"]
    assert events[-2:] == ["lost", "reconnected"]


def test_hanging_status_read_counts_as_lost(tmp_path: Path) -> None:
    agent = active_agent(tmp_path, ("hang_s=4",))
    agent.command("inject_fault", [("fault", "timeout"), ("duration_s", "0.3")])
    t0 = time.monotonic()
    agent.poll()
    assert time.monotonic() - t0 < 3.0 and agent.level == ERROR and "did not return" in agent.message
    assert wait_for(lambda: agent.connected, 6.0, agent.poll)


def test_present_file_unplug(tmp_path: Path) -> None:
    plug = tmp_path / "plugged"
    plug.touch()
    agent = active_agent(tmp_path, (f"present_file={plug}",))
    plug.unlink()
    agent.poll()
    assert agent.level == ERROR and "unplugged" in agent.message
    plug.touch()
    assert wait_for(lambda: agent.connected, 5.0, agent.poll)


def test_bad_values_are_an_error_not_a_crash(tmp_path: Path) -> None:
    agent = active_agent(tmp_path, ("fault=bad_values",))
    assert agent.level == ERROR and "bad values" in agent.message and agent.connected
    assert check_reading("nonsense").level == ERROR
    assert check_reading(Reading(OK, "x", {"t": float("inf")})).level == ERROR  # type: ignore[dict-item]


class BrokenDriver:
    """Raises from everything, including close."""

    options: tuple[Arg, ...] = ()

    def __init__(self, options: dict[str, Any], context: Any) -> None:
        self.opened = False

    def open(self) -> Any:
        if self.opened:
            raise RuntimeError("second open")
        self.opened = True
        return object()

    def read_status(self) -> Any:
        raise ZeroDivisionError("driver bug")

    def commands(self) -> Any:
        return [Command("poke", states=("active", "inactive"))]

    def apply(self, command: str, args: dict[str, Any]) -> Any:
        raise KeyError("boom")

    def close(self) -> None:
        raise OSError("cannot close")


def test_nothing_a_driver_raises_escapes(tmp_path: Path) -> None:
    agent = make_agent(tmp_path, driver=BrokenDriver)
    reason = agent.configure()
    assert reason is not None and "ZeroDivisionError: driver bug" in reason
    agent.poll()
    agent.cleanup()
    agent.shutdown()
    assert agent.state == "finalized"


# -- drivers ---------------------------------------------------------------------------------------


def hwmon(root: Path, name: str = "nct6775") -> Path:
    chip = root / "hwmon3"
    chip.mkdir(parents=True)
    (chip / "name").write_text(name + "\n")
    (chip / "pwm1").write_text("128\n")
    (chip / "pwm1_enable").write_text("2\n")
    (chip / "fan1_input").write_text("1200\n")
    return chip


def test_sysfs_fan_really_changes_pwm1(tmp_path: Path) -> None:
    chip = hwmon(tmp_path / "hwmon")
    agent = make_agent(tmp_path, (f"root={tmp_path / 'hwmon'}", "chip=nct6775"), find_driver("sysfs_pwm"))
    assert agent.configure() is None and agent.hardware_id == str(chip / "pwm1")
    agent.activate()
    assert agent.values["mode"] == "auto" and agent.values["fan_rpm"] == "1200"
    answer = agent.command("set_duty", [("duty_percent", "100")])
    assert answer.accepted, answer.message
    assert (chip / "pwm1").read_text() == "255\n" and (chip / "pwm1_enable").read_text() == "1\n"
    assert not agent.command("set_duty", [("duty_percent", "120")]).accepted
    assert (chip / "pwm1").read_text() == "255\n"
    (chip / "pwm1").unlink()  # the chip goes away under us
    agent.poll()
    assert agent.level == ERROR and "vanished" in agent.message
    agent.cleanup()  # gives the fan back to automatic control
    assert (chip / "pwm1_enable").read_text() == "2\n"


def test_sysfs_absent_is_said_plainly(tmp_path: Path) -> None:
    agent = make_agent(tmp_path, (f"root={tmp_path / 'none'}",), find_driver("sysfs_pwm"))
    reason = agent.configure()
    assert reason is not None and reason.startswith("absent") and agent.level == OK


def test_nvml_power_honest_where_absent(tmp_path: Path) -> None:
    agent = make_agent(tmp_path, (), find_driver("nvml_power"))
    reason = agent.configure()
    if reason is None:  # a machine with an NVIDIA GPU
        assert agent.hardware_id and "power_limit_w" in agent.values
    else:
        assert reason.startswith("absent") and ("NVML" in reason or "nvidia-ml-py" in reason)


def test_builtins_are_registered_in_code() -> None:
    assert set(BUILTIN) <= set(available())
    for name in BUILTIN:
        cls = find_driver(name)
        assert all(isinstance(a, Arg) for a in cls.options)
    with pytest.raises(LookupError, match="no device driver 'warp'"):
        find_driver("warp")


def test_third_party_driver_found_by_entry_point(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "acme_fan").mkdir(parents=True)
    (site / "acme_fan" / "__init__.py").write_text(
        textwrap.dedent(
            """
            from krystal.devices.driver import Opened, Outcome, Reading
            from krystal.devices.schema import Arg, Command

            class AcmeFan:
                options = (Arg("speed", "int", min_value=0, max_value=9, default=3),)
                def __init__(self, options, context):
                    self.speed = options["speed"]
                def open(self):
                    return Opened("acme:1")
                def read_status(self):
                    return Reading(0, "acme fan", {"speed": str(self.speed)})
                def commands(self):
                    return [Command("boost")]
                def apply(self, command, args):
                    self.speed = 9
                    return Outcome(0, "boosted")
                def close(self):
                    pass
            """
        )
    )
    dist = site / "acme_fan-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-fan\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[krystal.device_drivers]\nacme_fan = acme_fan:AcmeFan\n")
    script = textwrap.dedent(
        """
        from krystal.devices.agent import Agent, DeviceConfig
        from krystal.devices.driver import available, find_driver
        assert "acme_fan" in available(), available()
        agent = Agent(DeviceConfig("f", "acme_fan", options=("speed=5",)), find_driver("acme_fan"), "u")
        assert agent.configure() is None, agent.message
        agent.activate()
        print(agent.values["speed"], agent.command("boost", []).accepted, agent.hardware_id)
        """
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=30, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["5", "True", "acme:1"]


# -- audit log, UUIDs, registry ---------------------------------------------------------------------


def test_audit_survives_kill_9(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    script = textwrap.dedent(
        f"""
        from krystal.devices.audit import AuditLog
        log = AuditLog({str(log)!r})
        i = 0
        while True:
            log.write({{"i": i, "pad": "x" * 3000}})
            i += 1
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script])
    assert wait_for(lambda: log.exists() and log.stat().st_size > 200_000, 20.0)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    raw = log.read_bytes().split(b"\n")
    whole = [json.loads(line) for line in raw[:-1]]  # every complete line parses
    assert [r["i"] for r in whole] == list(range(len(whole)))
    assert len(list(read_audit(log))) == len(whole)  # a torn last line, if any, is skipped


def test_uuid_kept_across_restarts(tmp_path: Path) -> None:
    first = UuidStore(tmp_path / "uuids.json").get("sim0")
    assert UuidStore(tmp_path / "uuids.json").get("sim0") == first
    assert UuidStore(tmp_path / "uuids.json").get("fan1") != first
    fixed = "12345678-1234-4234-8234-123456789abc"
    assert UuidStore(tmp_path / "uuids.json").get("sim0", fixed) == fixed
    (tmp_path / "uuids.json").write_text("{garbled")
    assert UuidStore(tmp_path / "uuids.json").get("sim0")  # a garbled file starts afresh
    assert state_dir("/o") == Path("/o")


def test_state_dir_follows_xdg(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", "/x")
    assert state_dir() == Path("/x/krystal/devices")


def test_registry_marks_missed_heartbeats_stale() -> None:
    now = [0.0]
    reg = Registry(timeout_s=4.0, clock=lambda: now[0])
    entry = Entry("sim0", "simulated", "sim:sim0", "active", OK, "ok", 1, 1.0, 0.0)
    assert reg.update(entry)
    now[0] = 3.9
    assert not reg.check() and not reg.is_stale("sim0")
    now[0] = 4.1
    assert reg.check() and reg.is_stale("sim0")
    assert reg.update(entry) and not reg.is_stale("sim0")  # fresh again on the next beat
    inactive = Entry("fan1", "sysfs_pwm", "", "inactive", OK, "ok", 0, 1.0, 0.0)
    reg.update(inactive)
    now[0] = 100.0
    reg.check()
    assert not reg.is_stale("fan1")  # only active devices beat


# -- fuzz -------------------------------------------------------------------------------------------

_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=st.sampled_from(["set_speed", "reset", "inject_fault", "dance", ""]) | _text,
    args=st.lists(
        st.tuples(
            st.sampled_from(["speed_percent", "fault", "duration_s", "x"]) | _text,
            st.sampled_from(["0", "50", "100", "-1", "1e309", "nan", "none", "disconnect"]) | _text,
        ),
        max_size=3,
    ),
    command_id=st.sampled_from(["", "a", "b"]),
    timeout_s=st.floats(allow_nan=True, allow_infinity=True),
)
def test_fuzz_commands_always_answer(
    tmp_path: Path, name: str, args: list[tuple[str, str]], command_id: str, timeout_s: float
) -> None:
    agent = active_agent(tmp_path, ("hang_s=0.6", "slow_command_s=0.6"))
    answer = agent.command(name, args, command_id=command_id, timeout_s=min(abs(timeout_s), 0.5))
    assert answer.level in (0, 1, 2) and answer.message
    agent.poll()
    agent.cleanup()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    items=st.lists(_text | st.sampled_from(["fault=timeout", "hang_s=-1", "max_rpm=1e9", "=x"]), max_size=4)
)
def test_fuzz_config_options(tmp_path: Path, items: list[str]) -> None:
    agent = make_agent(tmp_path, tuple(items))
    try:
        parse_options(SimulatedDriver.options, items)
        valid = True
    except SchemaError:
        valid = False
    if not valid:
        reason = agent.configure()
        assert reason is not None and agent.state == "unconfigured"


_AGENT_PROCESS = """
import sys, time
from krystal.devices.agent import Agent, DeviceConfig, Timing
from krystal.devices.audit import AuditLog
from krystal.devices.drivers.simulated import SimulatedDriver
from krystal.devices.store import CommandBook

folder = sys.argv[1]
timing = Timing(command_timeout_s=30.0, max_command_timeout_s=30.0)
config = DeviceConfig("sim0", "simulated", "fan", options=("slow_command_s=60",))
agent = Agent(config, SimulatedDriver, "00000000-0000-4000-8000-000000000000", timing=timing,
              audit=AuditLog(folder + "/audit.jsonl"), commands=CommandBook(folder + "/commands-sim0.jsonl"))
assert agent.configure() is None
agent.activate()
print(agent.command("set_speed", [("speed_percent", "55")], command_id="lc-1"), flush=True)
agent.command("inject_fault", [("fault", "slow_commands")])
print("slow", flush=True)
agent.command("set_speed", [("speed_percent", "70")], command_id="lc-2", timeout_s=30.0)
"""


def test_command_ids_survive_kill_9_and_restart(tmp_path: Path) -> None:
    """A retry after kill -9 and a restart is a duplicate with the first answer, never a second run;
    an id whose command was running when the process died is "outcome unknown", not rerun; a
    different command under a used id is refused."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _AGENT_PROCESS, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert "accepted=True" in first and proc.stdout.readline() == "slow\n"
        book = tmp_path / "commands-sim0.jsonl"
        assert wait_for(lambda: '"lc-2"' in book.read_text(), 10.0)  # lc-2 is running (60 s)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    from krystal.devices.store import CommandBook

    audit = AuditLog(tmp_path / "audit.jsonl")
    config = DeviceConfig("sim0", "simulated", "fan")
    uuid = "00000000-0000-4000-8000-000000000000"
    agent = Agent(config, SimulatedDriver, uuid, timing=FAST, audit=audit, commands=CommandBook(book))
    assert agent.configure() is None
    agent.activate()
    again = agent.command("set_speed", [("speed_percent", "55")], command_id="lc-1")
    assert again.accepted and again.level == OK and f"message={again.message!r}" in first
    unknown = agent.command("set_speed", [("speed_percent", "70")], command_id="lc-2")
    assert not unknown.accepted and "outcome is unknown" in unknown.message
    reused = agent.command("reset", [], command_id="lc-1")
    assert not reused.accepted and "already used for another command" in reused.message
    agent.poll()
    assert agent.values["commands_applied"] == "0"  # none of them ran in this process
    duplicates = [r for r in commands_in(tmp_path / "audit.jsonl") if r["command_id"] in ("lc-1", "lc-2")]
    assert [r["duplicate"] for r in duplicates] == [False, True, True, True]
    agent.shutdown()


def test_command_book_is_bounded_and_compacted(tmp_path: Path) -> None:
    from krystal.devices.store import CommandBook

    book = CommandBook(tmp_path / "c.jsonl", bound=4)
    for i in range(40):
        key = ("reset", (("n", str(i)),))
        book.start(f"id{i}", key)
        book.finish(f"id{i}", key, {"accepted": True, "level": 0, "message": f"m{i}", "values": {}})
    book.close()
    assert len((tmp_path / "c.jsonl").read_text().splitlines()) <= 4 * 4
    reopened = CommandBook(tmp_path / "c.jsonl", bound=4)
    assert list(reopened.entries) == ["id36", "id37", "id38", "id39"]
    assert reopened.get("id39") == (
        ("reset", (("n", "39"),)),
        {"accepted": True, "level": 0, "message": "m39", "values": {}},
    )
    (tmp_path / "c.jsonl").open("a").write('{"id": "torn", "comm')  # a torn last line: skipped
    assert CommandBook(tmp_path / "c.jsonl", bound=4).get("torn") is None


_FULL_DISK_PROCESS = """
import resource, signal, sys
from krystal.devices.agent import Agent, DeviceConfig, Timing
from krystal.devices.drivers.simulated import SimulatedDriver
from krystal.devices.store import CommandBook

path = sys.argv[1]
agent = Agent(DeviceConfig("sim0", "simulated", "fan"), SimulatedDriver,
              "00000000-0000-4000-8000-000000000000", commands=CommandBook(path))
assert agent.configure() is None
agent.activate()
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.RLIM_INFINITY))  # the disk is full
print(agent.command("set_speed", [("speed_percent", "55")], command_id="full-1"), flush=True)
resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))  # space again
print(agent.command("set_speed", [("speed_percent", "55")], command_id="full-1"), flush=True)
agent.poll()
print(agent.values["commands_applied"], flush=True)
agent.shutdown()
"""


def test_command_id_not_recorded_is_not_run_and_a_retry_runs_it(tmp_path: Path) -> None:
    """The id cannot be written (the file cannot grow: RLIMIT_FSIZE, as a full disk): the command is
    refused without running, so a retry with the same id once the disk has room runs it; it must
    not be taken for a command that started and whose outcome is unknown."""
    book = tmp_path / "commands-sim0.jsonl"
    out = subprocess.run(
        [sys.executable, "-c", _FULL_DISK_PROCESS, str(book)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    refused, retried, applied = out.stdout.splitlines()
    assert "accepted=False" in refused and "cannot be recorded" in refused, refused
    assert "accepted=True" in retried, retried
    assert applied == "1"
    from krystal.devices.store import CommandBook

    assert CommandBook(book).get("full-1") is not None and '"done"' in book.read_text()


def test_command_book_after_a_torn_last_line_keeps_the_next_record(tmp_path: Path) -> None:
    from krystal.devices.store import CommandBook

    path = tmp_path / "c.jsonl"
    path.write_text('{"id": "a", "command": "reset", "arguments": [], "state": "started"}\n{"id": "to')
    book = CommandBook(path)
    book.start("b", ("reset", ()))
    book.close()
    assert CommandBook(path).get("b") == (("reset", ()), None)  # started: not lost with the torn line
