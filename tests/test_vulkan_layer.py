"""The Krystal Vulkan layer, installed by the package's CMake, loaded into a real offscreen Vulkan
program (layer/test/draw_test.c) on llvmpipe: a real gpu_telemetry node reports exactly the draws,
vertices, indices, instances and dispatches the program records, per application; the program's image
is the same with and without the layer; the Khronos validation layer stacked with ours reports no
error; and the ring of a process that exited leaves the telemetry."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from krystal.msg import GpuTelemetry
from rclpy.parameter import Parameter

from krystal.gpu import layer
from krystal.gpu.node import GpuTelemetryNode
from krystal.gpu.vkring import Frame, RingSet
from krystal.ros.qos import reliable_qos, sensor_qos
from tests.conftest import spin_until

ROOT = Path(__file__).resolve().parent.parent
LAYER_DIR = layer.layer_dir()
DRAW_TEST = layer.draw_test()
VALIDATION = Path("/usr/share/vulkan/explicit_layer.d/VkLayer_khronos_validation.json")
# per frame: 5 draws of 3 triangles x 2 instances, 2 indexed of the same, 2 indirect, 3 dispatches of 6
WORK = {"draws": 5, "triangles": 3, "instances": 2, "indexed": 2, "indirect": 2, "dispatches": 3, "groups": 6}
EXPECT = {
    "app_draw_calls": 9,
    "app_indirect_draw_calls": 2,
    "app_vertex_count": 5 * 9 * 2,
    "app_index_count": 2 * 9 * 2,
    "app_instance_count": (5 + 2) * 2,
    "app_dispatches": 3,
    "app_workgroups": 18,
    "app_graphics_binds": 1,
    "app_compute_binds": 1,
    "app_submits": 1,
    "app_shader": "graphics",
    "app_presenting": False,
}
COMPUTE = {"draws": 0, "indexed": 0, "indirect": 0, "dispatches": 4, "groups": 2}


def _args(work: dict[str, int], frames: int, app: str) -> list[str]:
    out = [str(DRAW_TEST), "--frames", str(frames), "--app", app]
    for k, v in work.items():
        out += [f"--{k}", str(v)]
    return out


def _vulkan_env(layers: str | None, debug: bool = False) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VK_INSTANCE_LAYERS", "VK_LOADER_"))}
    if layers is not None:
        assert LAYER_DIR is not None
        env.update(layer.env(LAYER_DIR, layers.removeprefix(layer.LAYER_NAME).strip(":")))
        env["VK_INSTANCE_LAYERS"] = layers
    if debug:
        env["VK_LOADER_DEBUG"] = "layer"
    return env


def _run(work: dict[str, int], layers: str | None, debug: bool = False) -> tuple[dict[str, Any], str]:
    res = subprocess.run(
        _args(work, 3, "krystal-layer-test"),
        env=_vulkan_env(layers, debug),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads(res.stdout.splitlines()[-1]), res.stderr


@pytest.fixture(scope="module")
def vulkan() -> None:
    if LAYER_DIR is None or DRAW_TEST is None:
        pytest.skip("the Vulkan layer or draw_test is not built (no libvulkan-dev when CMake ran)")
    probe = subprocess.run(
        [str(DRAW_TEST), "--frames", "0"], capture_output=True, text=True, timeout=60, check=False
    )
    if probe.returncode == 3:
        pytest.skip(f"no Vulkan device (ICD): {probe.stderr.strip()}")
    assert probe.returncode == 0, probe.stderr


class Held:
    """draw_test with the layer, holding its instance (and ring) open after its frames until released."""

    def __init__(self, work: dict[str, int], frames: int, app: str) -> None:
        self.proc = subprocess.Popen(
            [*_args(work, frames, app), "--hold", "1"],
            env=_vulkan_env(layer.LAYER_NAME),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # printed after the last frame was submitted
        assert line, f"draw_test exited with {self.proc.wait()}"
        self.result = json.loads(line)

    def release(self) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.close()
        return self.proc.wait(60)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


@pytest.fixture()
def held() -> Iterator[list[Held]]:
    started: list[Held] = []
    yield started
    for h in started:
        h.stop()


def _app(msg: GpuTelemetry, pid: int) -> dict[str, Any] | None:
    """The per-application fields of `pid` in one message, None if it is not attached there."""
    if pid not in msg.app_pids:
        return None
    i = list(msg.app_pids).index(pid)
    names = [n for n in GpuTelemetry.get_fields_and_field_types() if n.startswith("app_")]
    return {n: getattr(msg, n)[i] for n in names}


def test_gpu_telemetry_reports_exactly_what_each_application_draws(
    ros: None, vulkan: None, held: list[Held], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    graphics = Held(WORK, 4, "krystal graphics")  # a space: cleaned to '_' in the ring's file name
    held.append(graphics)
    compute = Held(COMPUTE, 2, "krystal-compute")
    held.append(compute)
    # the node's own Vulkan probe loads the layer too (the shell exported it): a ring, but no application
    for k, v in _vulkan_env(layer.LAYER_NAME).items():
        if k.startswith("VK_"):
            monkeypatch.setenv(k, v)
    node = GpuTelemetryNode(
        parameter_overrides=[
            Parameter("drm_root", value=str(tmp_path)),
            Parameter("nvml", value=False),
            Parameter("rate_hz", value=10.0),
        ]
    )
    listener = rclpy.create_node("vk_layer_probe")
    msgs: list[GpuTelemetry] = []
    listener.create_subscription(GpuTelemetry, "gpu/telemetry", msgs.append, sensor_qos(20))
    status: dict[str, DiagnosticStatus] = {}

    def on_diagnostics(arr: DiagnosticArray) -> None:
        status.update({st.name: st for st in arr.status})

    listener.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, reliable_qos())

    def summary() -> DiagnosticStatus | None:
        return status.get("gpu_telemetry: summary")

    pids = (graphics.proc.pid, compute.proc.pid)
    try:
        assert spin_until([node, listener], lambda: any(all(_app(m, p) for p in pids) for m in msgs), 30.0)
        msg = next(m for m in reversed(msgs) if all(_app(m, p) for p in pids))
        g, c = _app(msg, pids[0]), _app(msg, pids[1])
        assert g is not None and c is not None
        assert {k: g[k] for k in EXPECT} == EXPECT
        assert g["app_names"] == "krystal graphics" and g["app_frames"] == 4 and g["app_lost_frames"] == 0
        assert g["app_frame_time_ms"] > 0
        assert (c["app_draw_calls"], c["app_dispatches"], c["app_workgroups"], c["app_shader"]) == (
            0,
            4,
            8,
            "compute",
        )
        assert (c["app_vertex_count"], c["app_compute_binds"], c["app_frames"]) == (0, 1, 2)
        assert list(Path("/dev/shm").glob(f"krystal-vk-{os.getpid()}-*")) and os.getpid() not in msg.app_pids
        assert "llvmpipe" in msg.device_name  # the applications drew on the device that is published
        others = [i for i, p in enumerate(msg.app_pids) if p not in pids]  # anything else on this machine
        assert msg.draw_calls == 9 + sum(msg.app_draw_calls[i] for i in others)
        assert msg.vertex_count == 90 + sum(msg.app_vertex_count[i] for i in others)
        attached = f"krystal graphics ({pids[0]})"
        assert spin_until([node, listener], lambda: attached in getattr(summary(), "message", ""), 10.0)
        st = summary()
        assert st is not None and f"krystal-compute ({pids[1]})" in st.message
        values = {kv.key: kv.value for kv in st.values}
        assert (
            "9 draws (2 indirect, 0 mesh), 90 vertices, 3 dispatches, 0 trace-rays (0 rays) per frame"
            in values[f"app {attached}"]
        )
        ring = Path(f"/dev/shm/krystal-vk-{pids[1]}-krystal-compute")
        assert ring.exists()
        # one exits normally (its layer removes the ring), one is killed (the ring stays behind)
        assert graphics.release() == 0
        compute.proc.send_signal(signal.SIGKILL)
        compute.proc.wait(30)
        assert ring.exists()
        t = len(msgs)
        assert spin_until(
            [node, listener], lambda: any(not (set(pids) & set(m.app_pids)) for m in msgs[t:]), 20.0
        )
        assert not ring.exists()  # the reader removed the dead process's ring
        assert spin_until(
            [node, listener],
            lambda: (
                "no Vulkan application" in getattr(summary(), "message", "")
                or not any(f"({p})" in getattr(summary(), "message", "") for p in pids)
            ),
            10.0,
        )
    finally:
        listener.destroy_node()
        node.destroy_node()


def test_image_is_identical_with_and_without_the_layer(vulkan: None) -> None:
    plain, _ = _run(WORK, None)
    layered, err = _run(WORK, layer.LAYER_NAME, debug=True)
    assert f'Insert instance layer "{layer.LAYER_NAME}"' in err  # it really was loaded
    assert layered["image_fnv"] == plain["image_fnv"] and layered["counter"] == plain["counter"]


@pytest.mark.parametrize("order", ["ours_first", "validation_first"])
def test_validation_layer_stacked_with_ours_reports_no_error(vulkan: None, order: str) -> None:
    if not VALIDATION.is_file():
        pytest.skip("Debian vulkan-validationlayers is not installed")
    names = [layer.LAYER_NAME, "VK_LAYER_KHRONOS_validation"]
    out, err = _run(WORK, ":".join(names if order == "ours_first" else names[::-1]), debug=True)
    assert 'Insert instance layer "VK_LAYER_KHRONOS_validation"' in err
    assert f'Insert instance layer "{layer.LAYER_NAME}"' in err
    assert out["debug_utils"] == 1 and out["validation_errors"] == 0, err[-3000:]
    assert "validation: Validation Error" not in err


def test_vulkan_env_prints_the_exports(vulkan: None, capsys: pytest.CaptureFixture[str]) -> None:
    from krystal.cli import main

    assert main(["vulkan-env"]) == 0
    text = capsys.readouterr().out
    assert (
        f"export VK_LAYER_PATH={LAYER_DIR}" in text
        and "export VK_INSTANCE_LAYERS=VK_LAYER_KRYSTAL_draws" in text
    )
    # what it prints, evaluated by a shell, loads the layer
    res = subprocess.run(
        ["bash", "-c", f"{text}\n{DRAW_TEST} --frames 1"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**_vulkan_env(None), "VK_LOADER_DEBUG": "layer"},
        check=False,
    )
    assert res.returncode == 0 and f'Insert instance layer "{layer.LAYER_NAME}"' in res.stderr


def _frames_of(pid: int) -> list[Frame]:
    """The frames the layer wrote for `pid` so far, read from its ring as gpu_telemetry does."""
    rings = RingSet(unlink_dead=False)  # other processes' rings are not ours to remove
    try:
        return [f for a in rings.poll().apps if a.pid == pid for f in a.new]
    finally:
        rings.close()


def test_transform_feedback_byte_count_draws_are_counted_on_llvmpipe(vulkan: None, held: list[Held]) -> None:
    """vkCmdDrawIndirectByteCountEXT (VK_EXT_transform_feedback, which llvmpipe has) counts as an
    indirect draw: its vertex count is a byte count in a GPU buffer."""
    h = Held({**WORK, "bytecount": 3}, 2, "krystal-bytecount")
    held.append(h)
    assert h.result["bytecount"] == 3
    frames = _frames_of(h.proc.pid)
    assert len(frames) == 2
    f = frames[-1]
    assert (f.draw_calls, f.indirect_draws) == (9 + 3, 2 + 3)
    assert f.instances == (5 + 2 + 3) * 2 and f.vertices == EXPECT["app_vertex_count"]
    assert f.mesh_draws == 0 and f.shader == "graphics"
    assert h.release() == 0


def test_mesh_and_ray_tracing_commands_through_a_stand_in_driver(tmp_path: Path) -> None:
    """llvmpipe here (Mesa 22.3) has neither mesh shaders nor ray tracing: layer/test/intercept_test.c
    loads the layer as the loader does over a stand-in driver that offers those commands. The layer
    hands out its own wrapper for each (and none for a command the driver lacks), forwards every call,
    and counts them: mesh-task calls as draws with shader "mesh", trace-rays calls with their rays as
    "ray_tracing"; and a program that starts presenting gets no empty frame at its first present."""
    cc = shutil.which("cc")
    if LAYER_DIR is None or cc is None:
        pytest.skip("the Vulkan layer is not built, or no C compiler to build the stand-in")
    exe = tmp_path / "intercept_test"
    subprocess.run(
        [cc, "-std=c11", "-O1", "-o", str(exe), str(ROOT / "layer/test/intercept_test.c"), "-ldl"], check=True
    )
    proc = subprocess.Popen(
        [str(exe), str(LAYER_DIR / layer.LIBRARY)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        result = json.loads(proc.stdout.readline())
        assert result == {"intercepted": 11, "commands": 11, "forwarded": 13, "absent_hidden": 1}
        mesh, trace, before_present, presented = _frames_of(proc.pid)  # no empty frame among them
        assert (mesh.draw_calls, mesh.mesh_draws, mesh.indirect_draws, mesh.instances) == (10, 9, 8, 2)
        assert mesh.shader == "mesh" and mesh.trace_rays == 0
        assert (trace.trace_rays, trace.rays, trace.draw_calls, trace.dispatches) == (
            4,
            8 * 4 + 2 * 2 * 2,
            0,
            0,
        )
        assert trace.shader == "ray_tracing"
        assert (before_present.mesh_draws, before_present.submits) == (1, 1)
        assert (presented.mesh_draws, presented.submits) == (1, 1)
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        assert proc.wait(30) == 0
