"""Test hosts: two or three "machines" on one box, each a network namespace, joined by a bridge.

Each host has its own network stack (veth `eth0` on a bridge that lives in a namespace of its own),
its own /dev/shm and its own /etc/machine-id, so Fast DDS takes it for another machine and talks
to it over UDP as it would across a real link (with the same machine id and /dev/shm it would use
shared memory and the link would carry nothing). Nothing is added to the machine's own network
namespace; addresses are private (10.213.N.0/24) and exist only inside the namespaces made here.
Everything is removed by `down()` (also on failure: use `with Hosts(...)`); namespaces left by a
run that was killed are removed by the next one (`remove_stale`), as their names carry the pid.

User script: `tools/hosts.sh up|run|down` (see `python -m krystal.hosts -h`). Needs root (or
CAP_SYS_ADMIN + CAP_NET_ADMIN) and iproute2; blocking multicast (`multicast=False`) needs nftables.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "krystal"
SHM_ROOT = Path("/dev/shm")
_STATE_DIR = Path(os.environ.get("XDG_RUNTIME_DIR", "/tmp")) / "krystal-hosts"


def unavailable() -> str | None:
    """Why test hosts cannot be made here, or None."""
    if sys.platform != "linux":
        return "network namespaces need Linux"
    if shutil.which("ip") is None:
        return "iproute2 (`ip`) is not installed"
    if os.geteuid() != 0:
        return "making network namespaces needs root"
    probe = f"{PREFIX}-probe-{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, check=False)
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False)
    if shutil.which("unshare") is None and shutil.which("mount") is None:
        return "`mount` is not installed"
    return None


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale() -> list[str]:
    """Remove namespaces (and their shm folders) of earlier runs whose process is gone."""
    listed = _ip("netns", "list", check=False).stdout.split("\n")
    removed = []
    for line in listed:
        name = line.split(" ")[0]
        parts = name.split("-")
        if len(parts) >= 4 and parts[0] == PREFIX and parts[1].isdigit() and not _alive(int(parts[1])):
            _kill_inside(name)
            _ip("netns", "del", name, check=False)
            removed.append(name)
    for folder in SHM_ROOT.glob(f"{PREFIX}-hosts-*"):
        pid = folder.name.split("-")[2]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
    return removed


def _kill_inside(netns: str) -> None:
    pids = _ip("netns", "pids", netns, check=False).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)


@dataclass
class Host:
    name: str
    netns: str
    address: str
    port: str  # the bridge's end of this host's link (in the switch namespace)
    shm: Path
    machine_id: Path
    procs: list[subprocess.Popen[str]] = field(default_factory=list)


class Hosts:
    """`with Hosts(("a", "b")) as hosts: hosts.start("a", [...])`: namespaces up, then all removed."""

    def __init__(self, names: Sequence[str] = ("a", "b"), multicast: bool = True, subnet: int | None = None):
        if not 1 <= len(names) <= 8 or len(set(names)) != len(names):
            raise ValueError("1 to 8 distinct host names")
        self.tag = f"{os.getpid()}-{secrets.token_hex(2)}"
        self.subnet = subnet if subnet is not None else secrets.randbelow(250) + 1
        self.multicast = multicast
        self.switch = f"{PREFIX}-{self.tag}-sw"
        self.root = SHM_ROOT / f"{PREFIX}-hosts-{self.tag}"
        self.hosts: dict[str, Host] = {}
        port_tag = self.tag.replace("-", "")[-8:]
        for i, name in enumerate(names):
            self.hosts[name] = Host(
                name=name,
                netns=f"{PREFIX}-{self.tag}-{name}",
                address=f"10.213.{self.subnet}.{i + 1}",
                port=f"k{port_tag}{i}",
                shm=self.root / name / "shm",
                machine_id=self.root / name / "machine-id",
            )

    def __enter__(self) -> Hosts:
        try:
            self.up()
        except BaseException:
            self.down()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    def up(self) -> None:
        remove_stale()
        _ip("netns", "add", self.switch)
        _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.switch, "link", "set", "br0", "up")
        _ip("-n", self.switch, "link", "set", "lo", "up")
        for host in self.hosts.values():
            host.shm.mkdir(parents=True, exist_ok=True)
            host.machine_id.write_text(secrets.token_hex(16) + "\n")
            _ip("netns", "add", host.netns)
            _ip("-n", self.switch, "link", "add", host.port, "type", "veth", "peer", "name", "eth0",
                "netns", host.netns)  # fmt: skip
            _ip("-n", self.switch, "link", "set", host.port, "master", "br0")
            _ip("-n", self.switch, "link", "set", host.port, "up")
            _ip("-n", host.netns, "link", "set", "lo", "up")
            _ip("-n", host.netns, "addr", "add", f"{host.address}/24", "dev", "eth0")
            _ip("-n", host.netns, "link", "set", "eth0", "up")
            self.set_multicast(host.name, self.multicast)

    def set_multicast(self, name: str, on: bool) -> None:
        """Let multicast (224.0.0.0/4) in and out of the host, or block it both ways.

        Removing the route is not enough: Fast DDS names the interface of its multicast sockets
        (IP_MULTICAST_IF), which bypasses the routing table; so an nftables table drops it too.
        """
        host = self.hosts[name]
        _ip("-n", host.netns, "route", "replace" if on else "del", "224.0.0.0/4", "dev", "eth0", check=on)
        if on:
            self.nft(name, "delete table inet krystal_multicast", check=False)
            return
        self.nft(name, "add table inet krystal_multicast")
        for hook in ("input", "output"):
            self.nft(
                name, f"add chain inet krystal_multicast {hook} {{ type filter hook {hook} priority 0 ; }}"
            )
            self.nft(name, f"add rule inet krystal_multicast {hook} ip daddr 224.0.0.0/4 counter drop")

    def nft(self, name: str, rule: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run `nft <rule>` in host `name`'s network namespace (its own ruleset; needs nftables)."""
        if shutil.which("nft") is None:
            raise RuntimeError("nftables (`nft`) is not installed: cannot block traffic")
        done = subprocess.run(
            ["ip", "netns", "exec", self.hosts[name].netns, "nft", rule],
            capture_output=True,
            text=True,
            check=False,
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"nft {rule}: {done.stderr.strip()}")
        return done

    def link(self, name: str, up: bool) -> None:
        """Cut (or restore) the host's link at the bridge: a partition, as a pulled cable."""
        _ip("-n", self.switch, "link", "set", self.hosts[name].port, "up" if up else "down")

    def mtu(self, name: str, mtu: int) -> None:
        """Set the MTU of host `name`'s `eth0` only (the bridge's end keeps 1500): the host sends
        smaller packets, and frames bigger than `mtu` sent to it are dropped at its end of the veth
        (a black hole for large packets, as a host whose MTU does not match its link)."""
        _ip("-n", self.hosts[name].netns, "link", "set", "eth0", "mtu", str(mtu))

    def addresses(self) -> list[str]:
        return [h.address for h in self.hosts.values()]

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """This process's environment for a process on a test host: discovery over the subnet, every
        host a static peer (so discovery also works where multicast is blocked)."""
        env = dict(os.environ)
        env.pop("ROS_LOCALHOST_ONLY", None)
        env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "SUBNET"
        env["ROS_STATIC_PEERS"] = ";".join(self.addresses())
        env.update(extra or {})
        return env

    def command(self, name: str, argv: Sequence[str]) -> list[str]:
        """`argv` run on host `name`: its network namespace, its /dev/shm and machine id."""
        host = self.hosts[name]
        # the machine id first: its file lies under /dev/shm, which the second mount replaces
        script = 'mount --bind "$0" /etc/machine-id && mount --bind "$1" /dev/shm && shift && exec "$@"'
        return ["ip", "netns", "exec", host.netns, "sh", "-c", script, str(host.machine_id), str(host.shm),
                *argv]  # fmt: skip

    def start(
        self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None, **kwargs: object
    ) -> subprocess.Popen[str]:
        """Start `argv` on host `name` in a session of its own (stopped by `down`)."""
        popen: subprocess.Popen[str] = subprocess.Popen(  # type: ignore[call-overload]
            self.command(name, argv),
            env=dict(env) if env is not None else self.env(),
            start_new_session=True,
            text=True,
            **kwargs,
        )
        self.hosts[name].procs.append(popen)
        return popen

    def stop(self, popen: subprocess.Popen[str], timeout_s: float = 5.0) -> int | None:
        """SIGINT its session, then SIGKILL after `timeout_s`; the exit code."""
        if popen.poll() is None:
            try:
                os.killpg(popen.pid, signal.SIGINT)
                popen.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(popen.pid, signal.SIGKILL)
                popen.wait()
            except ProcessLookupError:
                pass
        return popen.returncode

    def down(self) -> None:
        """Stop every process started here, remove the namespaces and folders (idempotent)."""
        for host in self.hosts.values():
            for popen in host.procs:
                with contextlib.suppress(OSError):
                    self.stop(popen, timeout_s=3.0)
        for host in self.hosts.values():
            _kill_inside(host.netns)
            _ip("netns", "del", host.netns, check=False)
        _ip("netns", "del", self.switch, check=False)
        shutil.rmtree(self.root, ignore_errors=True)

    def describe(self) -> dict[str, object]:
        return {
            "tag": self.tag,
            "switch": self.switch,
            "multicast": self.multicast,
            "hosts": {
                h.name: {"netns": h.netns, "address": h.address, "port": h.port} for h in self.hosts.values()
            },
        }


def _state_file(tag: str) -> Path:
    return _STATE_DIR / f"{tag}.json"


def main(argv: Sequence[str] | None = None) -> int:
    """`up` makes hosts and prints their names; `run HOST -- CMD` runs a command on one; `down` removes."""
    parser = argparse.ArgumentParser(prog="krystal-hosts", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="verb", required=True)
    up = sub.add_parser("up", help="make the hosts; prints a tag for run/down (keeps them until down)")
    up.add_argument("names", nargs="*", default=["a", "b"])
    up.add_argument("--no-multicast", action="store_true", help="no multicast route: static peers only")
    run = sub.add_parser("run", help="run a command on a host, with the hosts' discovery environment")
    run.add_argument("tag")
    run.add_argument("host")
    run.add_argument("cmd", nargs=argparse.REMAINDER)
    down = sub.add_parser("down", help="stop what runs on the hosts and remove them")
    down.add_argument("tag")
    sub.add_parser("clean", help="remove hosts of runs whose process is gone")
    args = parser.parse_args(argv)
    why = unavailable()
    if why:
        print(f"krystal-hosts: {why}", file=sys.stderr)
        return 2
    if args.verb == "clean":
        print("\n".join(remove_stale()))
        return 0
    if args.verb == "up":
        return _up(args.names, multicast=not args.no_multicast)
    hosts = _load(args.tag)
    if args.verb == "run":
        cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
        return subprocess.run(hosts.command(args.host, cmd), env=hosts.env(), check=False).returncode
    hosts.down()
    _state_file(args.tag).unlink(missing_ok=True)
    keeper = int(args.tag.split("-")[0])
    with contextlib.suppress(ProcessLookupError):
        os.kill(keeper, signal.SIGTERM)
    return 0


def _up(names: list[str], multicast: bool) -> int:
    """Make the hosts in a child process that stays (its pid is in their names, so `clean` leaves
    them alone) until `down`; print their tag."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid:
        os.close(write_end)
        with os.fdopen(read_end) as answer:
            text = answer.read().strip()
        if not text.startswith("tag "):
            print(f"krystal-hosts: {text or 'the keeper process died'}", file=sys.stderr)
            return 1
        print(text.split(" ", 1)[1])
        return 0
    os.close(read_end)
    os.setsid()
    with os.fdopen(write_end, "w") as answer:
        try:
            hosts = Hosts(names, multicast=multicast)
            hosts.up()
        except Exception as exc:
            answer.write(f"{type(exc).__name__}: {exc}")
            os._exit(1)
        _STATE_DIR.mkdir(parents=True, exist_ok=True)
        state = hosts.describe() | {"names": names, "subnet": hosts.subnet}
        _state_file(hosts.tag).write_text(json.dumps(state))
        answer.write(f"tag {hosts.tag}")
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    while True:
        time.sleep(3600)


def _load(tag: str) -> Hosts:
    path = _state_file(tag)
    if not path.is_file():
        raise SystemExit(f"krystal-hosts: no hosts with tag {tag} (see `up`)")
    state = json.loads(path.read_text())
    hosts = Hosts(state["names"], multicast=state["multicast"], subnet=state["subnet"])
    hosts.tag = tag
    hosts.switch = state["switch"]
    hosts.root = SHM_ROOT / f"{PREFIX}-hosts-{tag}"
    for name, h in state["hosts"].items():
        host = hosts.hosts[name]
        host.netns, host.address, host.port = h["netns"], h["address"], h["port"]
        host.shm, host.machine_id = hosts.root / name / "shm", hosts.root / name / "machine-id"
    return hosts


if __name__ == "__main__":
    sys.exit(main())
