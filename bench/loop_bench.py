"""The loop on a slow edge box: the graph in a cgroup CPU quota, a CPU hog joining it on a schedule.

The box: a cgroup (v1 `cpu` controller at /sys/fs/cgroup/cpu, or v2 `cpu.max`, whichever the
machine has) holding video_source (1080p30 test pattern, render feed on) and ascii_renderer (and
reasoning, for the loop cases), all started from the package's default config. A busy loop is
started inside the same cgroup after `calm` seconds, runs `hog` seconds and is stopped; `calm`
seconds follow. The probe (this process) is outside the cgroup. The cgroup is removed afterwards,
also when a case fails.

Cases, one run: `fixed` (the default style, the top of the ladder, pinned: the anchor), `loop`
(reasoning, rules + prediction), `learned` (reasoning with the shipped learned policy), `floor`
(the cheapest style of the ladder pinned, with the render feed its grid asks for).

Per case and phase: on-budget fraction (AsciiFrames received by the probe within `budget` ms of
their capture stamp, over the frames video_source captured: published + dropped, from its
/diagnostics), delivered fps, e2e p50/p99 (capture stamp -> receipt), quality (the project's
blurred SSIM, src/krystal/ascii/quality.py, of each delivered frame's style rendered offline from
the same test pattern through the same render feed width), switches per minute (StyleDecisions
that changed the style), and the reasoning step's lateness (its /diagnostics p99 at the end of the
hog phase).

    python -m bench.loop_bench [--quick] [--quota 0.5] [--period-ms 100] [--cases fixed,loop,...]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bench.common import dies_with_us, emit
from krystal.domain import isolated_domain_id

V1_ROOT = Path("/sys/fs/cgroup/cpu")
V2_ROOT = Path("/sys/fs/cgroup")
CASES = ("fixed", "loop", "learned", "floor")
# the hog stops with the benchmark too, as its nodes do (started with dies_with_us)
HOG = "from krystal.supervise.children import die_with_parent\ndie_with_parent()\nwhile True: pass"


# -- the box ---------------------------------------------------------------------------------------
@dataclass
class CpuBox:
    """A cgroup with a CPU quota; processes join it by pid. `remove()` empties and deletes it."""

    path: Path
    version: int  # 1 or 2
    rt_note: str = "no real-time time in the box"

    @staticmethod
    def probe() -> tuple[int, Path] | str:
        """(version, root) of a usable cpu controller, or why there is none."""
        if (V1_ROOT / "cpu.cfs_quota_us").exists() and os.access(V1_ROOT, os.W_OK):
            return 1, V1_ROOT
        controllers = V2_ROOT / "cgroup.controllers"
        if controllers.exists() and "cpu" in controllers.read_text().split() and os.access(V2_ROOT, os.W_OK):
            return 2, V2_ROOT
        return "no writable cgroup cpu controller (v1 /sys/fs/cgroup/cpu or v2 cpu.max); run as root"

    @classmethod
    def create(
        cls, name: str, cpus: float, period_ms: float, rt_share: float = 0.0, weight_tasks: int = 10
    ) -> CpuBox:
        found = cls.probe()
        if isinstance(found, str):
            raise OSError(found)
        version, root = found
        path = root / name
        path.mkdir()
        box = cls(path, version)
        period_us = int(period_ms * 1000)
        quota_us = max(1000, int(cpus * period_us))
        try:
            # the weight: a new group weighs as one task against everything else on the machine, so
            # on a loaded machine it got less than its quota and the machine's load, not the quota,
            # set the pace (docs/reasoning.md); `weight_tasks` tasks' weight makes the quota bind
            if version == 1:
                (path / "cpu.cfs_period_us").write_text(str(period_us))
                (path / "cpu.cfs_quota_us").write_text(str(quota_us))
                (path / "cpu.shares").write_text(str(weight_tasks * 1024))
                box.rt_note = box._allow_realtime(rt_share)
            else:
                subtree = root / "cgroup.subtree_control"
                if "cpu" not in subtree.read_text().split():
                    subtree.write_text("+cpu")
                (path / "cpu.max").write_text(f"{quota_us} {period_us}")
                (path / "cpu.weight").write_text(str(min(10000, weight_tasks * 100)))
        except OSError:
            box.remove()
            raise
        return box

    def _allow_realtime(self, share: float) -> str:
        """v1 with RT group scheduling: a child group runs no SCHED_FIFO thread until it is given
        RT time (cpu.rt_runtime_us); `share` of the RT period, bounded like the CFS quota."""
        runtime = self.path / "cpu.rt_runtime_us"
        if share <= 0 or not runtime.exists():
            return "no real-time time in the box"
        period_us = int((self.path / "cpu.rt_period_us").read_text())
        try:
            runtime.write_text(str(int(share * period_us)))
        except OSError as exc:
            return f"real-time time refused ({exc.strerror}): SCHED_FIFO threads are refused in the box"
        return f"real-time {share:g} of {period_us / 1000:g} ms"

    def add(self, pid: int) -> None:
        (self.path / "cgroup.procs").write_text(str(pid))

    def pids(self) -> list[int]:
        try:
            return [int(x) for x in (self.path / "cgroup.procs").read_text().split()]
        except OSError:
            return []

    def throttled_s(self) -> float:
        """Time the group spent throttled (cpu.stat), seconds."""
        try:
            stat = dict(line.split() for line in (self.path / "cpu.stat").read_text().splitlines())
        except (OSError, ValueError):
            return math.nan
        if "throttled_time" in stat:
            return int(stat["throttled_time"]) / 1e9
        return int(stat.get("throttled_usec", 0)) / 1e6

    def cpu_s(self) -> float:
        """CPU time (user + system) of the processes in the box now, seconds (/proc/<pid>/stat)."""
        total = 0
        for pid in self.pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of stat)
        return total / os.sysconf("SC_CLK_TCK")

    def remove(self) -> None:
        """Kill what is left inside, move nothing out, delete the group."""
        for _ in range(50):
            pids = self.pids()
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)
        with contextlib.suppress(OSError):
            self.path.rmdir()


@contextmanager
def cpu_box(cpus: float, period_ms: float, rt_share: float = 0.0, weight_tasks: int = 10) -> Iterator[CpuBox]:
    name = f"krystal_loop_{os.getpid()}_{random.randrange(1 << 30)}"
    box = CpuBox.create(name, cpus, period_ms, rt_share, weight_tasks)
    try:
        yield box
    finally:
        box.remove()


# -- the graph -------------------------------------------------------------------------------------
def _executable(name: str) -> str:
    from ament_index_python.packages import get_package_prefix

    return str(Path(get_package_prefix("krystal")) / "lib" / "krystal" / name)


def _ladder() -> dict[str, Any]:
    """The reasoning node's calm ladder from the default config: top (fixed) and bottom (floor)."""
    from krystal.reasoning.node import PARAMS, ladders_of

    values = {p.name: p.default for p in PARAMS}
    styles = ladders_of(values)["calm"]
    return {"top": styles[0], "bottom": styles[-1], "per_column": values["source_width_per_column"]}


def case_commands(
    case: str, params_file: str, controller_priority: int = 0, frame_priority: int = 0
) -> list[list[str]]:
    lad = _ladder()
    width = lambda s: int(round(s.columns * lad["per_column"] / 2) * 2)  # noqa: E731
    pinned = lad["top"] if case == "fixed" else lad["bottom"]
    video = ["-p", "width:=1920", "-p", "height:=1080", "-p", "fps:=30.0"]
    frame_rt = ["-p", f"executor.sched_priority:={frame_priority}"]
    renderer = ["-p", "follow_style:=false" if case in ("fixed", "floor") else "follow_style:=true"]
    if case in ("fixed", "floor"):
        video += ["-p", f"render_width:={width(pinned)}", "-p", "follow_style:=false"]
        style = dict(mode=pinned.mode, kernel=pinned.kernel, kernel_size=pinned.kernel_size,
                     columns=pinned.columns, rows=pinned.rows)  # fmt: skip
        renderer += [x for k, v in style.items() for x in ("-p", f"{k}:={v}")]
    base = ["--ros-args", "--params-file", params_file, "--log-level", "warn"]
    commands = [
        [_executable("video_source"), *base, *video, *frame_rt],
        [_executable("ascii_renderer"), *base, *renderer, *frame_rt],
    ]
    if case in ("loop", "learned"):
        policy = "learned" if case == "learned" else "rules"
        rt = ["-p", f"executor.sched_priority:={controller_priority}"]
        commands.append(
            [_executable("reasoning"), *base, "-p", f"policy:={policy}", "-p", "log_enabled:=false", *rt]
        )
    return commands


# -- the probe -------------------------------------------------------------------------------------
@dataclass
class Record:
    frames: list[tuple[float, float, str, int, int, int, str]] = field(default_factory=list)
    # (receipt monotonic s, e2e ms, mode, kernel_size, columns, rows, kernel)
    captured: list[tuple[float, int]] = field(default_factory=list)  # (monotonic s, published+dropped)
    decisions: dict[int, tuple[float, tuple[Any, ...], int]] = field(default_factory=dict)
    # id -> (monotonic s, style key, source width)
    lateness: list[tuple[float, float, float]] = field(default_factory=list)  # (s, p99 ms, max ms)
    box_cpu: list[tuple[float, float, float]] = field(default_factory=list)  # (s, box CPU s, throttled s)


def run_case(
    case: str,
    box: CpuBox | None,
    commands: list[list[str]],
    schedule: tuple[float, float, float, float],
    env: dict[str, str],
) -> tuple[Record, float, float]:
    """Start the case's graph in the box, probe it through the schedule; (record, hog start, hog end)."""
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from krystal.msg import AsciiFrame, StyleDecision
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.time import Time

    from krystal.ros.qos import latched_qos, reliable_qos, sensor_qos

    def launch(command: list[str]) -> subprocess.Popen[bytes]:
        """In its own session; into the box at once (before it starts its threads, in practice)."""
        p = subprocess.Popen(
            command,
            env=dies_with_us(env),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        if box is not None:
            box.add(p.pid)
        return p

    procs = [launch(c) for c in commands]
    rec = Record()
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("loop_probe", context=context)

    def on_frame(msg: AsciiFrame) -> None:
        stamp = Time.from_msg(msg.header.stamp).nanoseconds
        e2e = (time.time_ns() - stamp) / 1e6
        rec.frames.append(
            (
                time.monotonic(),
                e2e,
                msg.mode,
                int(msg.kernel_size),
                int(msg.columns),
                int(msg.rows),
                msg.kernel,
            )
        )

    def on_style(msg: StyleDecision) -> None:
        if msg.policy == "manual" or int(msg.decision_id) in rec.decisions:
            return
        key = (msg.mode, msg.kernel, int(msg.kernel_size), int(msg.columns), int(msg.rows))
        rec.decisions[int(msg.decision_id)] = (time.monotonic(), key, int(msg.source_width_px))

    def on_diagnostics(msg: DiagnosticArray) -> None:
        now = time.monotonic()
        for status in msg.status:
            values = {kv.key: kv.value for kv in status.values}
            if status.name == "video_source: source" and "frames_published" in values:
                rec.captured.append(
                    (now, int(values["frames_published"]) + int(values.get("frames_dropped", "0")))
                )
            elif status.name == "reasoning: decisions" and "step_lateness_ms_p99" in values:
                rec.lateness.append(
                    (now, float(values["step_lateness_ms_p99"]), float(values["step_lateness_ms_max"]))
                )

    node.create_subscription(AsciiFrame, "krystal/ascii", on_frame, sensor_qos(10))
    node.create_subscription(StyleDecision, "krystal/style", on_style, latched_qos(20))
    node.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, reliable_qos(50))
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    hog: subprocess.Popen[bytes] | None = None
    warmup, calm1, hog_s, calm2 = schedule
    try:
        deadline = time.monotonic() + 60
        while not rec.frames and time.monotonic() < deadline:  # started: the schedule begins
            executor.spin_once(timeout_sec=0.1)
        if not rec.frames:
            raise RuntimeError(f"case {case}: no AsciiFrame within 60 s")
        start = time.monotonic() + warmup  # the loop's first descent is not the calm phase
        while time.monotonic() < start:
            executor.spin_once(timeout_sec=0.02)
        rec.frames.clear()
        rec.captured[:-1] = []
        hog_start, hog_end, end = start + calm1, start + calm1 + hog_s, start + calm1 + hog_s + calm2
        while (now := time.monotonic()) < end:
            if hog is None and now >= hog_start:
                if box is not None:
                    rec.box_cpu.append((now, box.cpu_s(), box.throttled_s()))
                hog = launch([sys.executable, "-c", HOG])
            if hog is not None and hog.poll() is None and now >= hog_end:
                if box is not None:  # before the hog's own CPU time leaves with it
                    rec.box_cpu.append((now, box.cpu_s(), box.throttled_s()))
                hog.kill()
                hog.wait()
            executor.spin_once(timeout_sec=0.02)
        return rec, hog_start, hog_end
    finally:
        if hog is not None and hog.poll() is None:
            hog.kill()
            hog.wait()
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGINT)
        for p in procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        executor.shutdown(timeout_sec=1.0)
        node.destroy_node()
        rclpy.try_shutdown(context=context)


# -- quality ---------------------------------------------------------------------------------------
_QUALITY: dict[tuple[Any, ...], float] = {}


def style_quality(style: tuple[str, str, int, int, int], width: int, reference: tuple[int, int]) -> float:
    """Blurred SSIM of this style (mode, kernel, kernel size, columns, rows) on three 1080p
    test-pattern frames fed through a render feed of `width` px (0: the full frame), judged at the
    pixel size of the `reference` grid (columns, rows: the top of the ladder), so that a smaller
    grid loses the detail it cannot draw."""
    key = (*style, width, *reference)
    if key in _QUALITY:
        return _QUALITY[key]
    import cv2

    from krystal.ascii import quality as q
    from krystal.ascii import raster
    from krystal.ascii.engine import Engine, Style
    from krystal.video.pattern import TestPattern
    from krystal.video.sources import render_copy

    mode, kernel, kernel_size, columns, rows = style
    engine = Engine(Style(mode=mode, kernel=kernel, kernel_size=kernel_size or 3, columns=columns, rows=rows))
    atlas = engine.atlas
    if atlas is None:
        return math.nan
    size = (reference[0] * atlas.cell_w, reference[1] * atlas.cell_h)
    pattern = TestPattern(1920, 1080, 30.0)
    scores = []
    for index in (0, 45, 90):
        frame = pattern.frame(index)
        scaled = render_copy(frame, width, 0, 0)
        render = engine.render(frame if scaled is None else scaled, "bgr8")
        if render.foreground is None:
            drawn = raster.ink(render.codes, atlas) / max(float(atlas.coverage.max()), 1e-3)
        else:
            drawn = q.luma01(raster.colour(render.codes, atlas, render.foreground, render.background), "rgb")
        luma: NDArray[np.float32] = cv2.resize(drawn.astype(np.float32), size, interpolation=cv2.INTER_AREA)  # type: ignore[assignment]
        source = q.luma01(cv2.resize(frame, size, interpolation=cv2.INTER_AREA))
        scores.append(q.blurred_ssim(luma, source, atlas.cell_w, atlas.cell_h))
    _QUALITY[key] = float(np.mean(scores))
    return _QUALITY[key]


# -- figures ---------------------------------------------------------------------------------------
def _captured_between(rec: Record, t0: float, t1: float) -> float:
    def at(t: float) -> float:
        before = [n for s, n in rec.captured if s <= t]
        after = [n for s, n in rec.captured if s > t]
        return float(before[-1] if before else (after[0] if after else 0))

    return max(0.0, at(t1) - at(t0))


def phase_figures(
    rec: Record, case: str, span: tuple[float, float], budget_ms: float, default_width: int
) -> dict[str, float]:
    top = _ladder()["top"]
    reference = (top.columns, top.rows)
    t0, t1 = span
    frames = [f for f in rec.frames if t0 <= f[0] < t1]
    e2e = np.array([f[1] for f in frames]) if frames else np.array([math.nan])
    captured = _captured_between(rec, t0, t1)
    on_budget = float((e2e <= budget_ms).sum()) / captured if captured else math.nan
    widths = sorted((t, w) for t, _, w in rec.decisions.values())

    def width_at(t: float) -> int:
        w = [x for s, x in widths if s <= t]
        return w[-1] if w and w[-1] else default_width

    driven = case in ("loop", "learned")  # the feed's width follows the decisions
    qualities = [
        style_quality((f[2], f[6], f[3], f[4], f[5]), width_at(f[0]) if driven else default_width, reference)
        for f in frames[:: max(1, len(frames) // 200)]
    ]
    keys = sorted((t, k) for t, k, _ in rec.decisions.values())
    switches = sum(
        1 for (t, k), (_, prev) in zip(keys[1:], keys[:-1], strict=True) if t0 <= t < t1 and k != prev
    )
    minutes = (t1 - t0) / 60
    late = [(p99, mx) for s, p99, mx in rec.lateness if s <= t1]
    return {
        "on_budget": round(min(1.0, on_budget), 4) if not math.isnan(on_budget) else math.nan,
        "delivered_fps": round(len(frames) / (t1 - t0), 2),
        "captured_fps": round(captured / (t1 - t0), 2),
        "e2e_p50_ms": round(float(np.nanpercentile(e2e, 50)), 2),
        "e2e_p99_ms": round(float(np.nanpercentile(e2e, 99)), 2),
        "quality": round(float(np.nanmean(qualities)), 4) if qualities else math.nan,
        "switches_per_min": round(switches / minutes, 2) if minutes else math.nan,
        "step_lateness_p99_ms": late[-1][0] if late else math.nan,
        "step_lateness_max_ms": late[-1][1] if late else math.nan,
    }


def run(args: argparse.Namespace) -> dict[str, dict[str, dict[str, float]]]:
    from krystal.paths import PROFILES_ENV, default_params_file, transport_profile
    from krystal.ros.compat import localhost_discovery_env

    domain = isolated_domain_id()
    os.environ.update(ROS_DOMAIN_ID=domain, **localhost_discovery_env())  # the probe's too
    os.environ.setdefault(PROFILES_ENV, str(transport_profile()))
    env = dict(os.environ)
    params = str(default_params_file())
    lad = _ladder()
    schedule = (args.warmup, args.calm, args.hog, args.calm)
    results: dict[str, dict[str, dict[str, float]]] = {}
    for case in args.cases:
        pinned = lad["bottom"] if case == "floor" else lad["top"]
        default_width = int(round(pinned.columns * lad["per_column"] / 2) * 2)
        commands = case_commands(case, params, args.controller_priority, args.frame_priority)
        with cpu_box(args.quota, args.period_ms, args.rt_share, args.weight_tasks) as box:
            throttled0 = box.throttled_s()
            rec, hog0, hog1 = run_case(case, box, commands, schedule, env)
            throttled = box.throttled_s() - throttled0
            rt_note = box.rt_note
        phases = {
            "calm": phase_figures(rec, case, (hog0 - args.calm, hog0), args.budget_ms, default_width),
            "hog": phase_figures(rec, case, (hog0 + args.settle, hog1), args.budget_ms, default_width),
            "after": phase_figures(rec, case, (hog1, hog1 + args.calm), args.budget_ms, default_width),
        }
        phases["hog"]["throttled_s"] = round(throttled, 2)
        if len(rec.box_cpu) == 2:  # what the box got during the hog, against its quota
            (t0, cpu0, thr0), (t1, cpu1, thr1) = rec.box_cpu
            phases["hog"]["box_cpu"] = round((cpu1 - cpu0) / (t1 - t0), 3)
            phases["hog"]["box_throttled_s_per_s"] = round((thr1 - thr0) / (t1 - t0), 3)
        phases["box"] = {"realtime": rt_note}  # type: ignore[dict-item]
        results[case] = phases
        print(json.dumps({"case": case, **phases}), file=sys.stderr, flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="warm-up 2 s, calm 3 s, hog 6 s; fixed and loop only"
    )
    parser.add_argument("--quota", type=float, default=0.5, help="CPUs the box may use (cfs quota / period)")
    parser.add_argument("--period-ms", type=float, default=100.0, help="cfs period of the quota")
    parser.add_argument(
        "--warmup", type=float, default=10.0, help="seconds after the first frame, not counted"
    )
    parser.add_argument("--calm", type=float, default=30.0)
    parser.add_argument("--hog", type=float, default=40.0)
    parser.add_argument("--settle", type=float, default=2.0, help="seconds of the hog phase not counted")
    parser.add_argument("--budget-ms", type=float, default=33.0)
    parser.add_argument(
        "--controller-priority", type=int, default=20,
        help="SCHED_FIFO priority of the reasoning node's executor (loop cases); 0: normal",
    )  # fmt: skip
    parser.add_argument(
        "--frame-priority", type=int, default=0,
        help="SCHED_FIFO priority of video_source's and ascii_renderer's executors (every case); 0: normal",
    )  # fmt: skip
    parser.add_argument(
        "--rt-share", type=float, default=0.2, help="RT time of the box (v1), share of the RT period"
    )
    parser.add_argument(
        "--weight-tasks", type=int, default=10,
        help="CPU weight of the box, in tasks (cpu.shares / cpu.weight): enough that the quota binds "
        "on a loaded machine; 1: the default weight of a new cgroup",
    )  # fmt: skip
    parser.add_argument("--cases", default=",".join(CASES))
    args = parser.parse_args()
    if args.quick:
        args.warmup, args.calm, args.hog, args.settle = 2.0, 3.0, 6.0, 1.0
        if args.cases == ",".join(CASES):
            args.cases = "fixed,loop"
    args.cases = [c for c in args.cases.split(",") if c]
    unknown = set(args.cases) - set(CASES)
    if unknown:
        parser.error(f"unknown case(s) {', '.join(sorted(unknown))}; known: {', '.join(CASES)}")
    load = [round(x, 2) for x in os.getloadavg()]
    found = CpuBox.probe()
    if isinstance(found, str):
        emit("loop", "on-budget fraction under the hog, loop vs fixed style", math.nan, math.nan, "fraction",
             lower_is_better=False, anchor_name="fixed default style", skipped=found)  # fmt: skip
        return
    results = run(args)
    box = f"cgroup v{found[0]} {args.quota:g} CPU per {args.period_ms:g} ms, weight {args.weight_tasks} tasks"
    extra = {"box": box, "loadavg_before": load, "loadavg_after": [round(x, 2) for x in os.getloadavg()]}
    for case in args.cases:
        if case == "fixed":
            continue
        for phase in ("hog", "calm"):
            ours, anchor = results[case][phase], results.get("fixed", {}).get(phase, {})
            emit("loop", f"{case} on-budget fraction ({phase}), {box}", ours["on_budget"],
                 anchor.get("on_budget", math.nan), "fraction", lower_is_better=False,
                 anchor_name="fixed default style", ours_detail=ours, anchor_detail=anchor,
                 floor_detail=results.get("floor", {}).get(phase), **extra)  # fmt: skip
        ours, anchor = results[case]["calm"], results.get("fixed", {}).get("calm", {})
        emit("loop", f"{case} quality (calm), {box}", ours["quality"], anchor.get("quality", math.nan),
             "blurred SSIM", lower_is_better=False, anchor_name="fixed default style", **extra)  # fmt: skip
    if "fixed" in results and len(args.cases) == 1:
        fixed = results["fixed"]["hog"]
        emit("loop", f"fixed on-budget fraction (hog), {box}", fixed["on_budget"], math.nan, "fraction",
             lower_is_better=False, anchor_name="none (one case)", ours_detail=fixed, **extra)  # fmt: skip


if __name__ == "__main__":
    main()
