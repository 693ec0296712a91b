"""thermal core on real sysfs-shaped folders: scan, thresholds, failures, rescans, penalty. No DDS."""

from __future__ import annotations

import errno
import itertools
import math
import os
import shutil
from pathlib import Path

import pytest
from bench.sysfs_tree import cooling_device, hwmon_chip, sensors_tree, thermal_zone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from krystal import sysfs
from krystal.thermal import sensors
from krystal.thermal.monitor import ThermalMonitor
from krystal.thermal.policy import (
    LEVEL_ERROR,
    LEVEL_OK,
    LEVEL_WARN,
    Thresholds,
    level,
    overrides_problem,
    parse_overrides,
    penalty,
    thresholds,
)


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def machine(root: Path) -> Path:
    """Two zones (one with passive/critical trips), a coretemp chip, a chip without thresholds."""
    thermal_zone(root, 0, "x86_pkg_temp", 55000, [("passive", 90000), ("critical", 100000)])
    thermal_zone(root, 1, "acpitz", 40000, [("critical", 0)])  # unused trip left at 0
    hwmon_chip(
        root, 0, "coretemp", [("Package id 0", 61000, 100000, 100000), ("Core 0", 60000, None, 105000)]
    )
    hwmon_chip(root, 1, "nvme", [(None, 38000, None, None)])  # no label, no threshold
    return root


def test_scan_finds_zones_and_hwmon_with_their_thresholds(tmp_path: Path) -> None:
    specs = {s.name: s for s in sensors.scan(str(machine(tmp_path))).sensors}
    assert list(specs) == [
        "thermal_zone0:x86_pkg_temp",
        "thermal_zone1:acpitz",
        "hwmon0:coretemp/Package id 0",
        "hwmon0:coretemp/Core 0",
        "hwmon1:nvme/temp1",
    ]
    pkg = specs["thermal_zone0:x86_pkg_temp"]
    assert (pkg.passive_c, pkg.critical_c) == (90.0, 100.0)
    assert math.isnan(specs["thermal_zone1:acpitz"].critical_c)
    assert specs["hwmon0:coretemp/Package id 0"].topic == "hwmon0_coretemp_package_id_0"
    assert specs["hwmon0:coretemp/Core 0"].critical_c == 105.0
    assert sensors.read(pkg, -60, 200) == sensors.Reading(55.0)


def test_thresholds_from_files_overrides_and_defaults(tmp_path: Path) -> None:
    specs = {s.name: s for s in sensors.scan(str(machine(tmp_path))).sensors}
    th = thresholds(specs["thermal_zone0:x86_pkg_temp"], {})
    assert th == Thresholds(90.0, 100.0, 90.0, "sensor")  # throttles at the passive trip
    # coretemp: max == crit, so warn comes a little before
    assert thresholds(specs["hwmon0:coretemp/Package id 0"], {}) == Thresholds(95.0, 100.0, 100.0, "sensor")
    assert thresholds(specs["hwmon1:nvme/temp1"], {}) == Thresholds(90.0, 95.0, 95.0, "default")
    over = parse_overrides(["nvme/temp1=60,70", "hwmon0:coretemp/Core 0=80,85"])
    assert thresholds(specs["hwmon1:nvme/temp1"], over) == Thresholds(60.0, 70.0, 70.0, "override")
    assert thresholds(specs["hwmon0:coretemp/Core 0"], over).origin == "override"


@pytest.mark.parametrize("bad", ["nvme", "x=1", "x=a,b", "x=90,80", "=1,2", "x=nan,1"])
def test_bad_overrides_are_refused_with_a_reason(bad: str) -> None:
    assert overrides_problem([bad])


def test_penalty_and_levels_at_chosen_temperatures() -> None:
    th = Thresholds(warn_c=85.0, error_c=100.0, throttle_c=90.0, origin="sensor")
    assert penalty(70.0, th.throttle_c, 15.0) == 0.0
    assert penalty(75.0, th.throttle_c, 15.0) == 0.0
    assert penalty(82.5, th.throttle_c, 15.0) == pytest.approx(0.5)
    assert 0.0 < penalty(80.0, 90.0, 15.0) < penalty(85.0, 90.0, 15.0) < 1.0
    assert penalty(90.0, th.throttle_c, 15.0) == 1.0 and penalty(120.0, 90.0, 15.0) == 1.0
    steps = [penalty(75.0 + i * 0.01, 90.0, 15.0) for i in range(1501)]
    assert max(b - a for a, b in itertools.pairwise(steps)) < 0.002  # smooth, no jumps
    assert [level(t, th) for t in (84.9, 85.0, 99.9, 100.0, math.nan)] == [
        LEVEL_OK,
        LEVEL_WARN,
        LEVEL_WARN,
        LEVEL_ERROR,
        LEVEL_OK,
    ]


def test_summary_hottest_headroom_penalty_and_throttling(tmp_path: Path) -> None:
    machine(tmp_path)
    mon = ThermalMonitor(str(tmp_path), ramp_c=15.0, clock=Clock())
    s = mon.cycle().summary
    assert s.max_temperature_c == 61.0 and s.hottest_sensor == "hwmon0:coretemp/Package id 0"
    assert s.headroom_c == pytest.approx(39.0)  # 100 - 61 on the package sensor
    assert s.throttle_penalty == 0.0 and not s.throttling and s.kernel_throttling is None
    (tmp_path / "thermal/thermal_zone0/temp").write_text("84000\n")  # 6 below its passive trip
    s = mon.cycle().summary
    assert 0.5 < s.throttle_penalty < 1.0 and not s.throttling
    (tmp_path / "thermal/thermal_zone0/temp").write_text("91000\n")
    s = mon.cycle().summary
    assert s.throttle_penalty == 1.0 and s.throttling
    assert s.levels[0] == LEVEL_WARN


def test_kernel_cooling_state_says_throttling_fans_do_not(tmp_path: Path) -> None:
    thermal_zone(tmp_path, 0, "cpu", 50000)
    cooling_device(tmp_path, 0, "Fan", 3)
    mon = ThermalMonitor(str(tmp_path), clock=Clock())
    assert mon.cycle().summary.kernel_throttling is None  # only a fan: unknown
    cooling_device(tmp_path, 1, "Processor", 0)
    mon.rescan()
    assert mon.cycle().summary.kernel_throttling is False
    (tmp_path / "thermal/cooling_device1/cur_state").write_text("2\n")
    s = mon.cycle().summary
    assert s.kernel_throttling is True and s.throttling and s.throttle_penalty == 0.0


def test_failing_sensors_are_nan_with_a_reason_and_the_others_go_on(tmp_path: Path) -> None:
    hwmon_chip(
        tmp_path,
        0,
        "board",
        [("ok", 42000, None, None), ("garbage", "N/A", None, None), ("hot", 900000, None, None)],
    )
    fifo = tmp_path / "hwmon/hwmon0/temp4_input"
    os.mkfifo(fifo)
    (tmp_path / "hwmon/hwmon0/temp4_label").write_text("busy\n")
    writer = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)  # a writer with nothing written: EAGAIN
    try:
        cycle = ThermalMonitor(str(tmp_path), clock=Clock()).cycle()
    finally:
        os.close(writer)
    by_name = dict(zip(cycle.summary.names, cycle.readings, strict=True))
    assert by_name["hwmon0:board/ok"] == sensors.Reading(42.0)
    assert by_name["hwmon0:board/garbage"].error.startswith("garbage")
    assert by_name["hwmon0:board/hot"].error.startswith("implausibly hot (900 °C above valid_max_c 200)")
    assert by_name["hwmon0:board/busy"].error.startswith("EAGAIN")
    assert all(math.isnan(r.temperature_c) for n, r in by_name.items() if n != "hwmon0:board/ok")
    assert cycle.summary.max_temperature_c == 95.0  # the implausible one, at its error threshold
    assert cycle.summary.unreadable == 3


def test_an_implausibly_hot_reading_fails_safe(tmp_path: Path) -> None:
    """250 °C on the junction must not make the machine look cool: it counts as at its error
    threshold (penalty 1, throttling, ERROR, hottest), its own temperature NaN with the reason."""
    machine(tmp_path)
    mon = ThermalMonitor(str(tmp_path), clock=Clock())
    (tmp_path / "thermal/thermal_zone0/temp").write_text("250000\n")
    cycle = mon.cycle()
    s = cycle.summary
    assert cycle.readings[0].implausibly_hot and "taken as hot" in cycle.readings[0].error
    assert math.isnan(s.temperatures_c[0])
    assert s.hottest_sensor == "thermal_zone0:x86_pkg_temp" and s.max_temperature_c == 100.0
    assert s.throttle_penalty == 1.0 and s.throttling and s.headroom_c == 0.0
    assert s.levels[0] == LEVEL_ERROR and s.unreadable == 1
    (tmp_path / "thermal/thermal_zone0/temp").write_text("-100000\n")  # implausibly cold: unknown
    s = mon.cycle().summary
    assert s.hottest_sensor == "hwmon0:coretemp/Package id 0" and s.levels[0] == LEVEL_OK


def test_levels_have_hysteresis_no_flapping_at_a_threshold(tmp_path: Path) -> None:
    hwmon_chip(tmp_path, 0, "nvme", [(None, 38000, None, None)])  # defaults: warn 90, error 95
    mon = ThermalMonitor(str(tmp_path), hysteresis_c=2.0, clock=Clock())
    temp = tmp_path / "hwmon/hwmon0/temp1_input"
    seen = []
    for millideg in (90000, 89900, 90000, 89000, 88100, 88000, 95000, 94500, 93100, 93000, 96000, 85000):
        temp.write_text(f"{millideg}\n")
        seen.append(mon.cycle().summary.levels[0])
    w, e, ok = LEVEL_WARN, LEVEL_ERROR, LEVEL_OK
    assert seen == [w, w, w, w, w, ok, e, e, e, w, e, ok]
    th = Thresholds(warn_c=85.0, error_c=100.0, throttle_c=90.0, origin="sensor")
    assert level(84.0, th, LEVEL_WARN, 0.0) == LEVEL_OK  # no hysteresis: as before


def test_a_missing_root_is_told_apart_from_no_sensors(tmp_path: Path) -> None:
    assert not ThermalMonitor(str(tmp_path), clock=Clock()).cycle().root_missing
    assert ThermalMonitor(str(tmp_path / "missing"), clock=Clock()).cycle().root_missing


def test_read_error_reasons() -> None:
    assert sysfs.reason(OSError(errno.EIO, "Input/output error")) == "EIO (input/output error)"
    assert sysfs.reason(OSError(errno.ENODEV, "No such device")) == "vanished"
    assert sysfs.reason(OSError(errno.EBUSY, "Device or resource busy")) == "EBUSY (Device or resource busy)"


def test_vanishing_and_appearing_sensors(tmp_path: Path) -> None:
    machine(tmp_path)
    clock = Clock()
    mon = ThermalMonitor(str(tmp_path), rescan_period_s=5.0, clock=clock)
    first = mon.cycle()
    assert len(first.specs) == 5 and len(first.appeared) == 5
    shutil.rmtree(tmp_path / "hwmon/hwmon1")  # the nvme drive is unplugged
    clock.t = 1.0
    gone = mon.cycle()
    nvme = gone.summary.names.index("hwmon1:nvme/temp1")
    assert gone.readings[nvme].error == "vanished" and math.isnan(gone.summary.temperatures_c[nvme])
    assert gone.summary.max_temperature_c == 61.0  # the others go on
    clock.t = 1.5
    after = mon.cycle()  # a vanished file triggers the rescan at once
    assert after.removed == ("hwmon1:nvme/temp1",) and len(after.specs) == 4
    hwmon_chip(tmp_path, 2, "amdgpu", [("edge", 47000, None, 110000)])
    clock.t = 2.0
    assert len(mon.cycle().specs) == 4  # found at the next rescan, not before
    clock.t = 7.0
    later = mon.cycle()
    assert later.appeared == ("hwmon2:amdgpu/edge",)
    assert later.readings[later.summary.names.index("hwmon2:amdgpu/edge")].temperature_c == 47.0


def test_no_sensors_at_all(tmp_path: Path) -> None:
    for root in (tmp_path, tmp_path / "missing"):
        s = ThermalMonitor(str(root), clock=Clock()).cycle().summary
        assert s.names == () and s.temperatures_c == () and s.hottest_sensor == ""
        assert math.isnan(s.max_temperature_c) and math.isnan(s.headroom_c)
        assert s.throttle_penalty == 0.0 and not s.throttling


@pytest.mark.parametrize(
    ("name", "token"),
    [
        ("hwmon1:coretemp/Package id 0", "hwmon1_coretemp_package_id_0"),
        ("thermal_zone0:x86_pkg_temp", "thermal_zone0_x86_pkg_temp"),
        ("0:é//", "s_0"),
        (":::", "sensor"),
    ],
)
def test_topic_tokens_are_valid(name: str, token: str) -> None:
    assert sensors.topic_token(name) == token


def test_duplicate_labels_get_unique_names_and_topics(tmp_path: Path) -> None:
    hwmon_chip(tmp_path, 0, "x", [("t", 1000, None, None), ("t", 2000, None, None)])
    hwmon_chip(tmp_path, 1, "state", [])
    specs = sensors.scan(str(tmp_path)).sensors
    assert len({s.name for s in specs}) == 2 and len({s.topic for s in specs}) == 2


def test_a_32_sensor_tree(tmp_path: Path) -> None:
    s = ThermalMonitor(str(sensors_tree(tmp_path)), clock=Clock()).cycle().summary
    assert len(s.names) == 32 and not any(math.isnan(t) for t in s.temperatures_c)


_CONTENT = st.one_of(st.binary(max_size=64), st.integers(-(10**12), 10**12).map(lambda i: str(i).encode()))


_FILES = ("temp", "type", "trip_type", "trip_temp", "label", "crit", "high", "state")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(files=st.fixed_dictionaries({k: _CONTENT for k in _FILES}))
def test_fuzz_sysfs_files_never_crash(tmp_path: Path, files: dict[str, bytes]) -> None:
    root = tmp_path / "fuzz"
    shutil.rmtree(root, ignore_errors=True)
    zone = thermal_zone(root, 0, "z", 0, [("passive", 0)])
    (zone / "temp").write_bytes(files["temp"])
    (zone / "type").write_bytes(files["type"])
    (zone / "trip_point_0_type").write_bytes(files["trip_type"])
    (zone / "trip_point_0_temp").write_bytes(files["trip_temp"])
    chip = hwmon_chip(root, 0, "c", [("l", 0, 0, 0)])
    (chip / "name").write_bytes(files["type"])
    (chip / "temp1_input").write_bytes(files["temp"])
    (chip / "temp1_label").write_bytes(files["label"])
    (chip / "temp1_crit").write_bytes(files["crit"])
    (chip / "temp1_max").write_bytes(files["high"])
    (cooling_device(root, 0, "Processor", 0) / "cur_state").write_bytes(files["state"])
    cycle = ThermalMonitor(str(root), clock=Clock()).cycle()
    assert len(cycle.specs) == 2
    valid = set("abcdefghijklmnopqrstuvwxyz0123456789_")
    for spec, reading in zip(cycle.specs, cycle.readings, strict=True):
        assert reading.error or -60.0 <= reading.temperature_c <= 200.0
        assert spec.topic and spec.topic[0].isalpha() and set(spec.topic) <= valid
    assert 0.0 <= cycle.summary.throttle_penalty <= 1.0
