#!/usr/bin/env bash
# `make test-compat`: the ROS-free cores on the Python and library versions of the ROS 2 distros
# the README names: Humble (Ubuntu 22.04: Python 3.10) and Jazzy (Ubuntu 24.04: Python 3.12).
# Each gets a venv .venv-compat-<name>/ with requirements/compat-<name>.txt, rebuilt only when the
# pins change (about 30 s each from the registry); then pytest runs with KRYSTAL_CORE_ONLY=1, which
# collects only the test modules that import no ROS package (tests/ros_free.py).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
say() { printf '\033[1m[test-compat]\033[0m %s\n' "$*" >&2; }

find_python() {  # python<version> that really runs: on PATH, else pyenv's newest patch release
  local version=$1 candidate="" dir
  if command -v "python$version" >/dev/null && "python$version" -c "" 2>/dev/null; then
    command -v "python$version"
    return 0
  fi
  if command -v pyenv >/dev/null; then
    for dir in "$(pyenv root)/versions/$version".*; do
      [[ -x "$dir/bin/python$version" ]] && candidate="$dir/bin/python$version"
    done
  fi
  [[ -n "$candidate" ]] && echo "$candidate"
}

build() {  # name python-version: (re)build .venv-compat-<name> when its pins or Python changed
  local name=$1 version=$2 pins="requirements/compat-$1.txt" venv=".venv-compat-$1" py stamp
  py="$(find_python "$version")" || true
  if [[ -z "$py" ]]; then
    say "python$version not found (install it, e.g. pyenv install $version)"
    return 1
  fi
  stamp="$(sha256sum < "$pins" | cut -c1-16) $("$py" -c 'import sys; print(sys.version.split()[0])')"
  [[ "$(cat "$venv/.krystal-compat" 2>/dev/null)" == "$stamp" ]] && return 0
  say "building $venv ($name: $py, $pins)"
  rm -rf "$venv"
  "$py" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --only-binary=:all: -r "$pins" 2>&1 \
    | { grep -v "is ignored: it is neither a file nor a directory" || true; }
  echo "$stamp" > "$venv/.krystal-compat"
}

run() {  # name
  local venv=".venv-compat-$1"
  [[ -f "$venv/.krystal-compat" ]] || return 1
  say "$1: $("$venv/bin/python" -c 'import sys, numpy, PIL, cv2; print(f"Python {sys.version.split()[0]}, NumPy {numpy.__version__}, Pillow {PIL.__version__}, OpenCV {cv2.__version__}")')"
  # shellcheck disable=SC2086
  env -u AMENT_PREFIX_PATH -u CMAKE_PREFIX_PATH -u VIRTUAL_ENV PYTHONPATH="$ROOT/src:$ROOT" \
    KRYSTAL_CORE_ONLY=1 "$venv/bin/python" -m pytest -q -p no:cacheprovider ${PYTEST_ARGS:-} tests
}

# Downloads in parallel (network-bound), tests one after the other (CPU-bound).
build jammy 3.10 & jammy=$!
build noble 3.12 & noble=$!
status=0
wait $jammy || status=1
wait $noble || status=1
run jammy || status=1
run noble || status=1
exit $status
