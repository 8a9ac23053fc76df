#!/usr/bin/env bash
# Build the colcon workspace ros_ws/: the interface package qwen_stack_interfaces (ament_cmake)
# and this repository's own ament_python package qwen_stack (ros_ws/src/qwen_stack -> ../..).
#
# Usage:
#   scripts/build_ros_ws.sh [--symlink-install | --copy-install] [--verbose] [--build-base DIR]
#                           [--install-base DIR] [--log-base DIR] [other `colcon build` args...]
# Defaults: --symlink-install (the workspace's mode: `colcon build --symlink-install`), bases
# ros_ws/build, ros_ws/install, ros_ws/log. Idempotent; a re-run with nothing changed takes a few
# seconds (colcon and CMake are incremental); switching the install mode rebuilds the interfaces.
# colcon's output (with setuptools' and CMake's warnings) is shown only if the build fails or with
# --verbose; it is kept in <log base>/build_ros_ws.output.log.
#
# Two worlds:
# - pip ROS 2 wheels (default): the virtual environment $QWEN_STACK_VENV (default: <repo>/.venv)
#   must hold requirements/ros.txt (incl. ros-ament-cmake, colcon-common-extensions, cmake).
#   The wheels' exported CMake targets carry include folders of the machine that built them
#   (/opt/python/cp311-cp311/...); ros_ws/cmake/pip_ros_wheels_fixups.cmake, passed as
#   CMAKE_PROJECT_INCLUDE, rewrites them to this machine's Python and numpy include folders.
#   Nothing in the virtual environment is edited.
# - a sourced system ROS 2 (AMENT_PREFIX_PATH holds a ROS install with ament_cmake): plain
#   colcon build, no repairs.
#
# qwen_stack itself is always built with a copy install, even with --symlink-install: colcon's
# symlink install runs `setup.py develop`, which puts one folder on sys.path and cannot express
# setup.py's package_dir mapping of several top-level folders (qwen_node/, safety/, ...) into
# one `qwen_stack.*` namespace (colcon even refuses the identity mapping 'qwen_stack' ->
# 'qwen_stack'). The pip-world processes do not use that copy: qwen_stack.rosenv keeps it off
# PYTHONPATH, so they import the live (editable) qwen_stack; its installed executables in
# install/qwen_stack/lib/qwen_stack/ (for ros2 launch) load the entry points of the running
# interpreter's qwen_stack as well.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WS="$ROOT/ros_ws"
FIXUPS="$WS/cmake/pip_ros_wheels_fixups.cmake"

die() { echo "build_ros_ws.sh: $*" >&2; exit 1; }
abspath() { case "$1" in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }

SYMLINK=1
VERBOSE=0
BUILD_BASE="$WS/build"
INSTALL_BASE="$WS/install"
LOG_BASE="$WS/log"
EXTRA=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --symlink-install) SYMLINK=1 ;;
    --copy-install) SYMLINK=0 ;;
    -v|--verbose) VERBOSE=1 ;;
    --build-base) [[ $# -ge 2 ]] || die "--build-base needs a folder"; BUILD_BASE="$(abspath "$2")"; shift ;;
    --build-base=*) BUILD_BASE="$(abspath "${1#*=}")" ;;
    --install-base) [[ $# -ge 2 ]] || die "--install-base needs a folder"; INSTALL_BASE="$(abspath "$2")"; shift ;;
    --install-base=*) INSTALL_BASE="$(abspath "${1#*=}")" ;;
    --log-base) [[ $# -ge 2 ]] || die "--log-base needs a folder"; LOG_BASE="$(abspath "$2")"; shift ;;
    --log-base=*) LOG_BASE="$(abspath "${1#*=}")" ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) EXTRA+=("$1") ;;
  esac
  shift
done

# --- which ROS: a sourced system ROS 2, or the pip wheels in the virtual environment ---------
VENV="${QWEN_STACK_VENV:-$ROOT/.venv}"
SYSTEM_ROS=""
IFS=: read -r -a _prefixes <<< "${AMENT_PREFIX_PATH:-}"
for p in "${_prefixes[@]}"; do
  [[ -n "$p" && "$(abspath "$p")" != "$(abspath "$VENV")" ]] || continue
  if [[ -f "$p/share/ament_cmake/cmake/ament_cmakeConfig.cmake" && -f "$p/local_setup.sh" ]]; then
    SYSTEM_ROS="$p"; break
  fi
done

CMAKE_ARGS=()
if [[ -n "$SYSTEM_ROS" ]]; then
  echo "build_ros_ws.sh: using the sourced ROS 2 at $SYSTEM_ROS (no pip-wheel repairs)"
  command -v colcon >/dev/null || die "colcon not found (apt install python3-colcon-common-extensions)"
else
  [[ -x "$VENV/bin/python" ]] || die "no virtual environment at $VENV (set QWEN_STACK_VENV)"
  for tool in colcon cmake; do
    [[ -x "$VENV/bin/$tool" ]] || die "$tool missing in $VENV: run $VENV/bin/pip install -r $ROOT/requirements/ros.txt"
  done
  # CMake packages the interface build needs; the generator wheels do not depend on all of them.
  for pkg in ament_cmake ament_cmake_core ament_cmake_python ament_cmake_ros_core \
             ament_cmake_include_directories rosidl_default_generators rosidl_core_generators \
             builtin_interfaces std_msgs geometry_msgs action_msgs; do
    [[ -d "$VENV/share/$pkg/cmake" ]] || \
      die "CMake package $pkg missing in $VENV/share: run $VENV/bin/pip install -r $ROOT/requirements/ros.txt"
  done
  export VIRTUAL_ENV="$VENV"
  export PATH="$VENV/bin:$PATH"
  # ament_cmake's resource index (typesupport discovery) reads AMENT_PREFIX_PATH;
  # find_package() reads CMAKE_PREFIX_PATH. Both point at the venv's share/ folders.
  export AMENT_PREFIX_PATH="$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
  export CMAKE_PREFIX_PATH="$VENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
  CMAKE_ARGS=("-DCMAKE_PROJECT_INCLUDE=$FIXUPS" "-DPython3_EXECUTABLE=$VENV/bin/python")
fi

# Our CMake arguments join a --cmake-args the caller gave, else get their own.
COLCON_ARGS=()
if [[ ${#CMAKE_ARGS[@]} -gt 0 ]]; then
  merged=0
  for a in "${EXTRA[@]+"${EXTRA[@]}"}"; do
    COLCON_ARGS+=("$a")
    if [[ "$a" == "--cmake-args" ]]; then COLCON_ARGS+=("${CMAKE_ARGS[@]}"); merged=1; fi
  done
  [[ $merged -eq 1 ]] || COLCON_ARGS+=(--cmake-args "${CMAKE_ARGS[@]}")
else
  COLCON_ARGS=("${EXTRA[@]+"${EXTRA[@]}"}")
fi

# Switching a CMake package between symlink and copy install fails in an existing build folder
# ("existing path cannot be removed"): start that package afresh when the mode changes.
MODE_FILE="$BUILD_BASE/.qwen_stack_install_mode"
MODE=$([[ $SYMLINK -eq 1 ]] && echo symlink || echo copy)
if [[ -f "$MODE_FILE" && "$(cat "$MODE_FILE")" != "$MODE" ]]; then
  echo "build_ros_ws.sh: install mode changed to $MODE: rebuilding the interface packages from scratch"
  rm -rf "$BUILD_BASE/qwen_stack_interfaces" "$INSTALL_BASE/qwen_stack_interfaces" "$BUILD_BASE/tf2_msgs" "$INSTALL_BASE/tf2_msgs"
fi

# ros_ws/src/tf2_msgs is ROS 2's tf2_msgs for the pip world (no wheel has it); a system ROS 2 brings its own.
if [[ -n "$SYSTEM_ROS" ]] && python3 -c "import tf2_msgs" >/dev/null 2>&1; then
  EXTRA+=(--packages-skip tf2_msgs); COLCON_ARGS+=(--packages-skip tf2_msgs)
fi

cd "$WS"
start=$SECONDS
# A working build prints one line: colcon's ~200 lines of package progress and known setuptools/CMake
# warnings are in BUILD_OUTPUT, shown in full when the build fails.
mkdir -p "$LOG_BASE"
BUILD_OUTPUT="$LOG_BASE/build_ros_ws.output.log"
: > "$BUILD_OUTPUT"
colcon() {
  if [[ $VERBOSE -eq 1 ]]; then command colcon "$@"; return; fi
  command colcon "$@" >> "$BUILD_OUTPUT" 2>&1 || {
    cat "$BUILD_OUTPUT" >&2
    die "colcon build failed (its output is above and in $BUILD_OUTPUT)"
  }
}
if [[ $SYMLINK -eq 1 ]]; then
  colcon --log-base "$LOG_BASE" build --build-base "$BUILD_BASE" --install-base "$INSTALL_BASE" \
    --symlink-install --packages-skip qwen_stack "${COLCON_ARGS[@]+"${COLCON_ARGS[@]}"}"
  colcon --log-base "$LOG_BASE" build --build-base "$BUILD_BASE" --install-base "$INSTALL_BASE" \
    --packages-select qwen_stack "${EXTRA[@]+"${EXTRA[@]}"}"
else
  colcon --log-base "$LOG_BASE" build --build-base "$BUILD_BASE" --install-base "$INSTALL_BASE" \
    "${COLCON_ARGS[@]+"${COLCON_ARGS[@]}"}"
fi
mkdir -p "$BUILD_BASE" && echo "$MODE" > "$MODE_FILE"

# Prove the result: in the stack's ROS environment (qwen_stack.rosenv, pointed at this install
# base) the generated Python types import and their C typesupport loads (a serialization round
# trip needs it).
PY="$VENV/bin/python"; [[ -n "$SYSTEM_ROS" && ! -x "$PY" ]] && PY=python3
QWEN_STACK_ROS_WS_INSTALL="$INSTALL_BASE" "$PY" -m qwen_stack.rosenv "$PY" -c '
from rclpy.serialization import deserialize_message, serialize_message
from qwen_stack_interfaces.msg import SafetyVerdict
from qwen_stack_interfaces.action import RunTask
msg = SafetyVerdict(level=SafetyVerdict.STOP, reasons=["check"])
assert deserialize_message(serialize_message(msg), SafetyVerdict) == msg
assert RunTask.Goal(instruction="check").instruction == "check"
from tf2_msgs.msg import TFMessage
from geometry_msgs.msg import TransformStamped
tf = TFMessage(transforms=[TransformStamped(child_frame_id="base_link")])
assert deserialize_message(serialize_message(tf), TFMessage) == tf
' || die "the built interfaces do not load in the stack's ROS environment (see above)"
echo "build_ros_ws.sh: built ros_ws into $INSTALL_BASE in $((SECONDS - start)) s; interfaces load"
