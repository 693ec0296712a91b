#!/usr/bin/env bash
# `make setup`: everything Krystal needs, inside this checkout. Idempotent; seconds when nothing changed.
#   1. Debian packages (tools/debian-packages.txt): installed when root, else named exactly.
#   2. .venv with the pinned ROS 2 Kilted wheels, colcon and Python dependencies (requirements/lock.txt).
#   3. The wheels' CMake exports repaired inside the venv (tools/fix_ros_wheels.py).
#   4. colcon build of the package into build/ and install/ (skipped when no source changed).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${KRYSTAL_VENV:-$ROOT/.venv}"
say() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }

# 1. Debian packages
missing=()
while read -r pkg; do
  [[ -z "$pkg" || "$pkg" == \#* ]] && continue
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done < tools/debian-packages.txt
if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    say "installing Debian packages: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    say "missing Debian packages; run: sudo apt-get install -y ${missing[*]}"
    exit 1
  fi
fi

# 2. venv with pinned wheels (ROS 2 Kilted wheels are built for CPython 3.11)
if [[ ! -x "$VENV/bin/python" ]]; then
  PY="${PYTHON:-}"
  if [[ -z "$PY" ]]; then
    for candidate in python3.11 python3; do
      if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
        PY="$candidate"; break
      fi
    done
  fi
  [[ -n "$PY" ]] || { say "Python 3.11 is needed for the ROS 2 Kilted wheels (set PYTHON=...)"; exit 1; }
  say "creating $VENV with $PY"
  "$PY" -m venv "$VENV"
fi
lock_hash="$(sha256sum requirements/lock.txt tools/fix_ros_wheels.py | sha256sum | cut -c1-16)"
stamp="$VENV/.krystal-deps"
if [[ "$(cat "$stamp" 2>/dev/null)" != "$lock_hash" ]]; then
  say "installing pinned Python packages (requirements/lock.txt)"
  # The mirror's extra index prints a warning per missing project; keep pip's real output.
  "$VENV/bin/python" -m pip install --disable-pip-version-check -q -r requirements/lock.txt 2>&1 \
    | { grep -v "is ignored: it is neither a file nor a directory" || true; }
  "$VENV/bin/python" tools/fix_ros_wheels.py
  echo "$lock_hash" > "$stamp"
fi

# 3. colcon build, only when a source of the package changed since the last good build
built="$ROOT/install/.krystal-built"
if [[ -f "$built" ]] && [[ -z "$(find package.xml CMakeLists.txt colcon.meta cmake msg srv src launch config layer \
      -newer "$built" -print -quit 2>/dev/null)" ]]; then
  exit 0
fi
say "colcon build"
(
  source "$VENV/bin/activate"
  export AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV"
  colcon --log-base "$ROOT/log" build --base-paths "$ROOT" --build-base "$ROOT/build" \
    --install-base "$ROOT/install" --symlink-install --event-handlers console_cohesion- summary+ \
    --cmake-args -DPython3_EXECUTABLE="$VENV/bin/python"
)
touch "$built"
