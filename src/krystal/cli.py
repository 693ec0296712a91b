"""The `krystal` command."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from krystal.graph import GRAPH
from krystal.record.playback import ON_STALL

# The parent as early as this process can know it (this module is the console script's first
# import): follow_parent compares against it, so a parent that exits while rclpy and the nodes
# load is seen as gone, not mistaken for the process that adopted us.
_PARENT_AT_START = os.getppid()


@contextlib.contextmanager
def own_terminal() -> Iterator[None]:
    """Take the terminal's foreground so Ctrl-C reaches only this process, not a parent `make`.

    make dies of SIGINT even when its child exits 0; in its own foreground process group the
    child stops cleanly and make sees exit status 0.
    """
    fd = sys.stdin.fileno() if sys.stdin and sys.stdin.isatty() else -1
    previous = -1
    if fd >= 0 and os.getpgrp() != os.getpid():
        try:
            previous = os.tcgetpgrp(fd)
            old = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
            os.setpgid(0, 0)
            os.tcsetpgrp(fd, os.getpgrp())
            signal.signal(signal.SIGTTOU, old)
        except OSError:
            previous = -1
    try:
        yield
    finally:
        if previous >= 0:
            with contextlib.suppress(OSError):
                signal.signal(signal.SIGTTOU, signal.SIG_IGN)
                os.tcsetpgrp(fd, previous)


_STOP_SIGNALS = (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM)


def _caught_signals(pid: int) -> int | None:
    """The signal mask `pid` catches (Linux /proc), or None where it cannot be read."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("SigCgt:"):
                    return int(line.split()[1], 16)
    except (OSError, ValueError):
        return None
    return None


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8") as comm:
            return comm.read().strip()
    except OSError:
        return "?"


def _session(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except OSError:
        return None


def orphaned_at_start(parent: int) -> bool:
    """Whether `parent`, our parent when we could first look, already adopted us: the process that
    started us exited even earlier. A shell's child shares its session; init or a subreaper that
    adopts it does not. A session leader (a service, `setsid`) was detached on purpose: never."""
    ours = _session(0)
    theirs = _session(parent)
    return ours is not None and ours != os.getpid() and theirs is not None and theirs != ours


def parent_gone(parent: int, before: int | None) -> str | None:
    """Why the graph should stop now, or None: the parent exited (we were adopted), or a parent
    `make` is dying of a signal (GNU make resets a fatal signal's handler before it waits)."""
    now_parent = os.getppid()
    if now_parent != parent:
        return f"parent process {parent} exited (adopted by {now_parent} {_comm(now_parent)})"
    now = _caught_signals(parent) if before is not None else None
    if before is None or now is None:
        return None
    for sig in _STOP_SIGNALS:
        if before >> (sig - 1) & 1 and not now >> (sig - 1) & 1:
            return f"parent make {parent} is dying of {signal.Signals(sig).name}"
    return None


def follow_parent(poll_s: float = 0.2, parent: int | None = None) -> None:
    """Stop as on SIGTERM when the parent dies, or when a parent `make` starts dying of a signal,
    with the reason on stderr and in the log first.

    A signal sent to make alone (`kill -HUP`, a supervisor) never reaches a child that own_terminal
    moved out of make's process group, and make waits for its children before it dies: the graph
    would outlive it. The parent is the one seen at start (_PARENT_AT_START), so whether a parent
    that exits early is noticed does not depend on how fast the graph starts.
    """
    parent = _PARENT_AT_START if parent is None else parent
    name = _comm(parent)
    before = _caught_signals(parent) if name in ("make", "gmake") else None
    early = (
        f"parent process exited before krystal could watch it (adopted by {parent} {name})"
        if orphaned_at_start(parent)
        else None
    )

    def watch() -> None:
        reason = early or parent_gone(parent, before)
        while reason is None:
            time.sleep(poll_s)
            reason = parent_gone(parent, before)
        _say_stopping(reason)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="follow-parent", daemon=True).start()


def _say_stopping(reason: str) -> None:
    text = f"{reason}: stopping the graph"
    print(f"krystal: {text}", file=sys.stderr, flush=True)
    rclpy_logging = sys.modules.get("rclpy.logging")
    if rclpy_logging is not None:  # /rosout too, where `krystal health` and the view look
        with contextlib.suppress(Exception):
            rclpy_logging.get_logger("krystal").warning(text)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="krystal", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="start the graph's nodes composed in this process")
    run.add_argument("--params-file", help="ROS parameters file (default: share/krystal/config/krystal.yaml)")
    run.add_argument("--nodes", help="comma-separated node names (default: all of graph.py)")
    run.add_argument("--namespace", default="", help="namespace for every node")
    run.add_argument("--view", action="store_true", help="show the ASCII video live in this terminal")
    run.add_argument(
        "--isolate",
        action="store_true",
        help="each node in its own process, restarted when it dies (default: all in this process)",
    )
    run.add_argument(
        "--no-fit", action="store_true", help="keep the configured grid size instead of the terminal's"
    )
    run.add_argument("--log-level", default="info", choices=["debug", "info", "warn", "error", "fatal"])
    run.add_argument("--mode", help="ascii_renderer style: ramp, edges, sketch, cyberpunk or glitch")
    run.add_argument(
        "--executor",
        choices=["edf", "single", "multi", "events"],
        help="executor of the graph (default: executor.type from the parameters file, edf)",
    )

    view = sub.add_parser("view", help="show the ASCII video of a running graph in this terminal")
    view.add_argument("--namespace", default="", help="namespace of the graph to watch")
    view.add_argument(
        "--colors",
        default="auto",
        choices=["auto", "truecolor", "256", "none"],
        help="colour output of colour modes (auto: truecolor if COLORTERM says so, else 256)",
    )

    health = sub.add_parser("health", help="live table of the graph's health from /diagnostics")
    health.add_argument("--namespace", default="", help="namespace to listen in")
    health.add_argument("--once", action="store_true", help="listen --wait seconds, print one table, exit")
    health.add_argument("--wait", type=float, default=10.0, help="--once: longest wait for discovery")
    health.add_argument("--stale-after", type=float, default=5.0, help="seconds without update: STALE")

    sub.add_parser("nodes", help="list the nodes of the graph")

    record = sub.add_parser("record", help="record topics to an MCAP file (ROS 2 message definitions inside)")
    record.add_argument("topics", nargs="*", help="topics (default: all but /rosout, /parameter_events)")
    record.add_argument("-o", "--output", required=True, help="MCAP file to write, e.g. run.mcap")
    record.add_argument("--duration", type=float, default=0.0, help="stop after this many s (0: Ctrl-C)")

    play = sub.add_parser("play", help="publish an MCAP recording back with its original timing")
    play.add_argument("file", help="MCAP file written by krystal record or ros2 bag record -s mcap")
    play.add_argument("--rate", type=float, default=1.0, help="time factor: 2 plays twice as fast")
    play.add_argument("--loop", action="store_true", help="start again at the end")
    play.add_argument("--topics", nargs="*", help="play only these topics")
    play.add_argument("--wait-s", type=float, default=1.0, help="wait this long for subscribers first")
    play.add_argument(
        "--on-stall",
        choices=ON_STALL,
        default="catch-up",
        help="after the player fell behind: catch-up publishes what fell due at once and keeps the "
        "recorded end (rosbag2's way); shift moves the rest of the timeline, keeping the recorded gaps",
    )
    play.add_argument(
        "--stall-s", type=float, default=0.1, help="lateness that counts as a stall for --on-stall shift"
    )
    play.add_argument(
        "--max-unacked-mb",
        type=float,
        default=64.0,
        help="per reliable topic, MB published but not yet acknowledged by every subscriber before "
        "the player waits for them (the memory a stalled subscriber can make it hold)",
    )
    check = sub.add_parser("check", help="check temporal specifications against an MCAP recording")
    check.add_argument("spec_file", help="one 'name: formula' per line (# comments)")
    check.add_argument("recording", help="MCAP file with ROS 2 messages")
    check.add_argument("--namespace", default="", help="namespace the recording's topics carry")
    vk = sub.add_parser(
        "vulkan-env",
        help="print the exports that load the Krystal Vulkan layer into Vulkan applications",
        description=(
            "Prints `export VK_LAYER_PATH=...` and `export VK_INSTANCE_LAYERS=VK_LAYER_KRYSTAL_draws`; "
            'use as: eval "$(krystal vulkan-env)". VK_LAYER_PATH replaces the loader\'s own layer '
            "folders, so they are listed after ours (or the current VK_LAYER_PATH). With loaders from "
            "1.3.234, VK_LOADER_LAYERS_ENABLE=VK_LAYER_KRYSTAL_draws enables it as VK_INSTANCE_LAYERS does. "
            "gpu_telemetry then reports each application's draw calls."
        ),
    )
    vk.add_argument("--also", default="", help="more layers after ours, e.g. VK_LAYER_KHRONOS_validation")
    pattern = sub.add_parser("pattern", help="DTW patterns of temporal_solver")
    pattern_sub = pattern.add_subparsers(dest="pattern_command", required=True)
    cut = pattern_sub.add_parser(
        "cut", help="print a pattern cut from an MCAP recording as a `patterns` entry (config format)"
    )
    cut.add_argument("recording", help="MCAP file (krystal record, ros2 bag record -s mcap)")
    cut.add_argument("--topic", required=True, help="topic, e.g. krystal/render_stats")
    cut.add_argument(
        "--field", required=True, help="field path, e.g. render_time_ms_p99 or temperatures_c[0]"
    )
    cut.add_argument(
        "--from",
        dest="start",
        default="0",
        help="start, seconds after the recording's first message (12.5, 800ms)",
    )
    cut.add_argument("--to", dest="end", default="", help="end, likewise (default: the end of the recording)")
    cut.add_argument("--name", default="", help="pattern name (default: the field's last name)")
    cut.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="largest DTW distance that matches (default 0.25 * sqrt(samples): an RMS difference "
        "of a quarter standard deviation per sample of the z-normalised shape)",
    )
    _learning_parsers(sub)
    return parser


def _vulkan_env(args: argparse.Namespace) -> int:
    import shlex

    from krystal.gpu.layer import MANIFEST, SHARE, env, layer_dir

    directory = layer_dir()
    if directory is None:
        print(
            f"krystal vulkan-env: the layer is not installed ({SHARE}/{MANIFEST} not found under the "
            "install prefix): build with libvulkan-dev present (make setup)",
            file=sys.stderr,
        )
        return 1
    for name, value in env(directory, args.also).items():
        print(f"export {name}={shlex.quote(value)}")
    return 0


def _learning_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    harvest = sub.add_parser(
        "harvest", help="decision logs + MCAP recordings -> a training set (docs/learning.md)"
    )
    harvest.add_argument("inputs", nargs="*", help="decision logs (*.jsonl), recordings (*.mcap) or folders")
    harvest.add_argument(
        "-o", "--output", required=True, help="dataset path: writes <stem>.npz and <stem>.json"
    )
    harvest.add_argument(
        "--synthesize",
        type=int,
        default=0,
        metavar="N",
        help="first make N runs of the reasoning core under simulated load traces",
    )
    harvest.add_argument("--synth-dir", help="where synthesized logs and recordings go (default: beside -o)")
    harvest.add_argument("--seed", type=int, default=0, help="seed of the synthesized runs")
    harvest.add_argument("--duration", type=float, default=60.0, help="seconds per synthesized run")
    harvest.add_argument("--window", type=int, default=32, help="frames per telemetry window")
    harvest.add_argument("--stride", type=int, default=15, help="a frame sample every this many frames")
    harvest.add_argument("--horizon", type=int, default=30, help="frames that make a frame sample's outcome")
    policy = _train_parser(sub).add_parser(
        "policy", help="the style policy: a small transformer over telemetry windows"
    )
    policy.add_argument("dataset", help="dataset written by krystal harvest (.npz or its stem)")
    policy.add_argument("-o", "--output", required=True, help="folder for the model files")
    policy.add_argument("--seed", type=int, default=0)
    policy.add_argument("--epochs", type=int, default=30)
    policy.add_argument("--quick", action="store_true", help="a tiny model and few steps (seconds)")
    policy.add_argument("--held-out", type=float, default=0.25, help="share of recordings held out")
    policy.add_argument("--no-eval", action="store_true", help="skip the closed-loop evaluation")


def _train_parser(sub: Any) -> Any:
    """`krystal train ...`: training verbs (krystal.learning, which imports torch, loaded only here)."""
    train = sub.add_parser("train", help="train models: policy, glyphs, grow (Kasmina demo), search (Optuna)")
    verbs = train.add_subparsers(dest="verb", required=True)
    glyphs = verbs.add_parser("glyphs", help="retrain the learned glyph matcher; compare on held-out images")
    glyphs.add_argument("--out", default="runs/glyphs/glyph_matcher.npz", help=".npz the renderer loads")
    glyphs.add_argument("--store", default="runs/glyphs/mlflow", help="MLflow store ('' for none)")
    glyphs.add_argument("--steps", type=int, default=0, help="training steps (0: the recipe's)")
    glyphs.add_argument("--columns", type=int, default=100, help="held-out comparison grid columns")
    glyphs.add_argument("--rows", type=int, default=40, help="held-out comparison grid rows")
    grow = verbs.add_parser("grow", help="grow a Kasmina model on a generated task beside fixed ones")
    grow.add_argument("--task", default="spirals", choices=["spirals", "moons", "clusters", "policy"])
    grow.add_argument("--blueprint", default="mlp", choices=["mlp", "adapter", "attention", "head"])
    grow.add_argument("--no-mlflow", action="store_true", help="skip the MLflow run")
    grow.add_argument("--no-tensorboard", action="store_true", help="skip the TensorBoard log")
    search = verbs.add_parser("search", help="Optuna search over learning rate, seed count and blueprint")
    search.add_argument("--task", default="spirals", choices=["spirals", "moons", "clusters"])
    search.add_argument("--trials", type=int, default=12)
    for p in (grow, search):
        p.add_argument("--out", default="runs/kasmina", help="folder for logs, TensorBoard and MLflow")
    for p in (glyphs, grow, search):
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--quick", action="store_true", help="a small run that finishes in seconds")
    return verbs


def _train(args: argparse.Namespace) -> int:
    from pathlib import Path

    if args.verb == "policy":
        from krystal.learning.policy_model import cli as train_policy_cli

        return train_policy_cli(args)
    if args.verb == "glyphs":
        from krystal.learning.glyphs import main as glyphs_main

        store = Path(args.store) if args.store else None
        return glyphs_main(
            Path(args.out),
            args.seed,
            quick=args.quick,
            steps=args.steps or None,
            store=store,
            columns=args.columns,
            rows=args.rows,
        )
    from krystal.learning.kasmina import commands

    if args.verb == "grow":
        return commands.grow_main(
            args.task,
            Path(args.out),
            args.seed,
            quick=args.quick,
            blueprint=args.blueprint,
            mlflow=not args.no_mlflow,
            tensorboard=not args.no_tensorboard,
        )
    return commands.search_main(args.task, Path(args.out), args.seed, args.quick, args.trials)


def _pattern_cut(args: argparse.Namespace) -> int:
    import math

    from krystal.temporal.patterns import PatternError, cut_values, format_pattern_line, parse_time
    from krystal.temporal.spec import SpecError, parse_signal

    try:
        signal = parse_signal(f"{args.topic.strip().strip('/')}.{args.field.strip().lstrip('.')}")
        start = parse_time(args.start)
        end = parse_time(args.end) if args.end.strip() else math.inf
        if not 0.0 <= start < end:
            raise PatternError("--from must be >= 0 and before --to")
        values = cut_values(args.recording, signal, start, end)
    except (PatternError, SpecError) as exc:
        print(f"krystal pattern cut: {exc}", file=sys.stderr)
        return 2
    threshold = args.threshold if args.threshold is not None else 0.25 * math.sqrt(len(values))
    if not (threshold >= 0.0 and math.isfinite(threshold)):
        print("krystal pattern cut: --threshold must be a finite number >= 0", file=sys.stderr)
        return 2
    last = next((p for p in reversed(signal.path) if isinstance(p, str)), "pattern")
    name = args.name or last
    if not name.replace("_", "").replace("-", "").isalnum():
        print(f"krystal pattern cut: name {name!r}: letters, digits, _ and - only", file=sys.stderr)
        return 2
    print(format_pattern_line(name, signal, threshold, values))
    print(
        f"krystal pattern cut: {len(values)} samples of {signal.name}, threshold {threshold:.4g}",
        file=sys.stderr,
    )
    return 0


def _record(args: argparse.Namespace) -> int:
    import threading
    from pathlib import Path

    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from krystal.record.node import RecorderNode
    from krystal.ros import spin

    spin.init(["krystal_record", "--ros-args", "--log-level", "warn"])  # a full disk is told
    try:
        node = RecorderNode(Path(args.output), args.topics)
    except OSError as exc:  # no such folder, not writable, no space even for the header
        print(f"krystal record: cannot write {args.output}: {exc}", file=sys.stderr)
        rclpy.try_shutdown()
        return 1
    if args.duration > 0:
        threading.Timer(args.duration, rclpy.try_shutdown).start()
    code = spin.spin([node], SingleThreadedExecutor())
    r = node.recorder
    files = ", ".join(str(p) for p in r.paths)
    print(f"krystal record: {r.count} messages on {len(node.topics)} topics to {files}")
    if r.failures:  # a full disk: what was lost, and that the files are to be read together
        print(
            f"krystal record: {r.dropped} messages dropped by {r.failures} failed writes "
            f"({r.error or 'resumed'})",
            file=sys.stderr,
        )
    if not node.topics:  # a typo in a topic name must not look like a successful recording
        wanted = ", ".join(args.topics) if args.topics else "any topic"
        print(f"krystal record: no publisher of {wanted} was found; nothing recorded", file=sys.stderr)
        return code or 1
    return code


def _play(args: argparse.Namespace) -> int:
    import threading
    from pathlib import Path

    from rclpy.node import Node

    from krystal.record.node import Player
    from krystal.ros import spin

    if args.rate <= 0:
        print("krystal play: --rate must be > 0", file=sys.stderr)
        return 2
    if args.stall_s < 0:
        print("krystal play: --stall-s must be >= 0", file=sys.stderr)
        return 2
    if not args.max_unacked_mb > 0:
        print("krystal play: --max-unacked-mb must be > 0", file=sys.stderr)
        return 2
    spin.init(["krystal_play"])
    node = Node("krystal_play")
    stop = threading.Event()
    status = 0
    try:
        player = Player(node, Path(args.file), args.topics, int(args.max_unacked_mb * (1 << 20)))
        player.wait_for_subscribers(args.wait_s)
        n = player.play(args.rate, args.loop, stop, args.on_stall, args.stall_s)
        if not player.flush(args.wait_s):
            print(
                f"krystal play: subscribers had not acknowledged every reliable message {args.wait_s:g} s "
                "after the last publish (--wait-s); those still in flight are lost",
                file=sys.stderr,
            )
            status = 1
        if player.notes.text(args.file):
            print(f"krystal play: {player.notes.text(args.file)}", file=sys.stderr)
        print(f"krystal play: {n} messages from {args.file}")
        print(f"krystal play: {args.on_stall} at rate {args.rate:g}: {player.summary.describe()}")
    except KeyboardInterrupt:
        stop.set()
    except (OSError, ValueError, ImportError, AttributeError) as exc:
        print(f"krystal play: {exc}", file=sys.stderr)
        status = 1
    finally:
        _bounded_exit("krystal play", PLAY_EXIT_S, status)
        node.destroy_node()
        import rclpy

        rclpy.try_shutdown()
    return status


# Once play has published and flushed, a teardown that hangs (seen once in ~20 runs of the record test:
# the last lines printed, the process alive 30 s later) must not hold the caller: after this long the
# threads' stacks go to stderr and the process exits with the status it had.
PLAY_EXIT_S = 10.0


def _bounded_exit(command: str, seconds: float, status: int) -> None:
    import faulthandler
    import os

    def give_up() -> None:
        print(f"{command}: shutdown took over {seconds:g} s; the threads' stacks follow", file=sys.stderr)
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(status)

    timer = threading.Timer(seconds, give_up)
    timer.daemon = True
    timer.start()
    # the timer needs the GIL: a teardown stuck in C code holding it (seen: no stacks, alive 30 s
    # later) still ends here, faulthandler's watchdog thread needs none (it exits with status 1)
    faulthandler.dump_traceback_later(seconds + 5.0, exit=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "nodes":
        for e in GRAPH:
            print(f"{e.name:20} {e.executable:20} {e.description}")
        return 0
    if args.command == "run":
        from krystal.runner import run

        nodes = [n.strip() for n in args.nodes.split(",") if n.strip()] if args.nodes else None
        follow_parent()
        try:
            with own_terminal():
                return run(
                    params_file=args.params_file,
                    nodes=nodes,
                    namespace=args.namespace,
                    view=args.view,
                    fit=not args.no_fit,
                    log_level=args.log_level,
                    mode=args.mode,
                    executor=args.executor,
                    isolate=args.isolate,
                )
        except ValueError as exc:
            print(f"krystal run: {exc}", file=sys.stderr)
            return 2
    if args.command == "vulkan-env":
        return _vulkan_env(args)
    if args.command == "health":
        from krystal.ros.health_cli import main as health_main

        return health_main(args.namespace, args.once, args.wait, args.stale_after)
    if args.command == "check":
        from krystal.temporal.offline import run_check

        return run_check(args.spec_file, args.recording, args.namespace, sys.stdout, sys.stderr)
    if args.command == "view":
        from krystal.ascii.node import AsciiViewNode
        from krystal.ros import spin

        follow_parent()
        with own_terminal():
            spin.init(["krystal", "--ros-args", "--disable-stdout-logs"])
            return spin.spin([AsciiViewNode(namespace=args.namespace, colors=args.colors)])
    if args.command == "pattern":
        return _pattern_cut(args)
    if args.command == "record":
        return _record(args)
    if args.command == "play":
        return _play(args)
    if args.command == "harvest":
        from krystal.learning.harvest import cli as harvest_cli

        return harvest_cli(args)
    if args.command == "train":
        return _train(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
