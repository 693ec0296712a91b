"""package.xml declares every package the code imports, with its rosdep key, so `rosdep install`
on a ROS machine brings everything Krystal needs."""

from __future__ import annotations

import ast
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# import name -> rosdep keys that provide it (ROS packages are their own key)
ROSDEP = {
    "numpy": {"python3-numpy"},
    "cv2": {"python3-opencv"},
    "PIL": {"python3-pil"},
    "yaml": {"python3-yaml"},
    "torch": {"python3-torch"},
    "onnx": {"python3-onnx", "python3-onnx-pip"},
    "onnxruntime": {"python3-onnxruntime-pip"},
    "skimage": {"python3-skimage"},
    "hypothesis": {"python3-hypothesis"},
    "pytest": {"python3-pytest"},
    "chafa": {"chafa", "python3-chafa-pip"},
    "psutil": {"python3-psutil"},
    "vulkan": {"python3-vulkan-pip"},
    "pynvml": {"python3-nvidia-ml-py-pip", "python3-pynvml"},
    "sounddevice": {"python3-sounddevice-pip", "python3-sounddevice"},
    "soundfile": {"python3-soundfile-pip", "python3-soundfile"},
    "aubio": {"python3-aubio", "python3-aubio-ledfx-pip"},
    "librosa": {"python3-librosa-pip", "python3-librosa"},
    "pyloudnorm": {"python3-pyloudnorm-pip"},
    "fastapi": {"python3-fastapi", "python3-fastapi-pip"},
    "uvicorn": {"python3-uvicorn", "python3-uvicorn-pip"},
    "starlette": {"python3-starlette", "python3-fastapi", "python3-fastapi-pip"},
    "pydantic": {"python3-pydantic", "python3-fastapi"},  # fastapi requires it
    "scipy": {"python3-scipy"},
    "numba": {"python3-numba"},
    "httpx": {"python3-httpx", "python3-httpx-pip"},
    "websockets": {"python3-websockets", "python3-websockets-pip"},
    "prometheus_client": {"python3-prometheus-client"},
    "multipart": {"python3-multipart", "python3-python-multipart-pip"},
    "foxglove": {"python3-foxglove-sdk-pip"},
    "mcap": {"python3-mcap-pip"},
    "mcap_ros2": {"python3-mcap-ros2-support-pip"},
    "rosbags": {"python3-rosbags-pip"},
    "rich": {"python3-rich"},
    "rtamt": {"python3-rtamt-pip"},
    "dtaidistance": {"python3-dtaidistance-pip"},
    "nolds": {"python3-nolds-pip"},
    "reelay": {"python3-reelay-pip"},
    "mlflow": {"python3-mlflow-pip"},
    "optuna": {"python3-optuna-pip"},
    "tensorboard": {"python3-tensorboard-pip"},
}
LOCAL = {"krystal", "bench", "tests", "launch_testing_ros"}


def _declared() -> set[str]:
    root = ET.parse(ROOT / "package.xml").getroot()
    tags = ("depend", "exec_depend", "build_depend", "test_depend", "buildtool_depend")
    return {el.text.strip() for tag in tags for el in root.iter(tag) if el.text}


def _third_party(*folders: str) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    names = [node.module]
                for name in names:
                    top = name.split(".", maxsplit=1)[0]
                    if top not in sys.stdlib_module_names and top not in LOCAL and top != "__future__":
                        found.setdefault(top, path.relative_to(ROOT))
    return found


def test_every_import_has_a_declared_rosdep_key() -> None:
    declared = _declared()
    missing = []
    for module, where in _third_party("src/krystal", "launch", "bench").items():
        keys = ROSDEP.get(module, {module})  # a ROS package is its own key
        if not keys & declared:
            missing.append(f"{module} (imported in {where}): declare one of {sorted(keys)}")
    assert not missing, "package.xml lacks:\n" + "\n".join(missing)
