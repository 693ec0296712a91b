# Source this (bash) to use the built package: venv, ROS 2 environment, install/setup.bash.
_KRYSTAL_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_KRYSTAL_VENV="${KRYSTAL_VENV:-$_KRYSTAL_ROOT/.venv}"
# shellcheck disable=SC1091
source "$_KRYSTAL_VENV/bin/activate"
export AMENT_PREFIX_PATH="$_KRYSTAL_VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export CMAKE_PREFIX_PATH="$_KRYSTAL_VENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
# shellcheck disable=SC1091
source "$_KRYSTAL_ROOT/install/setup.bash"
unset _KRYSTAL_ROOT _KRYSTAL_VENV
