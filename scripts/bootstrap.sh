#!/usr/bin/env bash
# Install everything qwen_stack needs into a project-local virtual environment (.venv), idempotently.
# Called by scripts/demo.sh and scripts/test.sh; safe to run again (it skips what is already done).
#   - Debian packages: EGL/Mesa (headless MuJoCo rendering), Chromium (browser tests of the console)
#   - Python 3.11 venv with torch==2.13.0 (CPU), the ROS 2 Kilted wheels (unless a sourced system
#     ROS 2 already provides rclpy), transformers, MuJoCo, ... (requirements/*.txt)
#   - this package, editable; the interface package built in ros_ws/ (scripts/build_ros_ws.sh)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="$root/.venv"
say() { echo "[bootstrap] $*"; }

# --- Debian packages ----------------------------------------------------------------------
# EGL/Mesa: headless MuJoCo rendering; chromium: console browser tests; g++/make: ros_ws interface build;
# libsdformat-dev + pkg-config: the Gazebo files are checked by Gazebo's own SDF parser (tests/sim/test_sdf_parser.py)
apt_pkgs=(libegl1 libegl-mesa0 libgl1-mesa-dri chromium g++ make libsdformat-dev pkg-config)
missing=()
for p in "${apt_pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  say "installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# --- virtual environment ------------------------------------------------------------------
system_ros=0
if [ -n "${ROS_DISTRO:-}" ] && python3 -c "import rclpy" >/dev/null 2>&1; then
  system_ros=1  # a sourced ROS 2: use its rclpy, not the wheels
fi
py="${PYTHON:-python3.11}"
command -v "$py" >/dev/null || py=python3
if [ ! -x "$venv/bin/python" ]; then
  say "creating $venv ($($py --version))"
  if [ $system_ros = 1 ]; then "$py" -m venv --system-site-packages "$venv"; else "$py" -m venv "$venv"; fi
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)

stamp="$venv/.qwen_stack_installed"
want="$(cat requirements/*.txt setup.py package.xml | sha256sum | cut -d' ' -f1) system_ros=$system_ros"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  say "installing Python packages (requirements/*.txt)"
  "${pip[@]}" install -U "pip<26.2"
  # torch first, pinned: it resolves to the CPU wheel on local disk and nothing later may replace it
  "${pip[@]}" install torch==2.13.0
  if [ $system_ros = 0 ]; then "${pip[@]}" install -r requirements/ros.txt; fi
  "${pip[@]}" install -r requirements/core.txt -r requirements/test.txt
  # the stubs' metadata pulls TensorRT itself, which cannot install without NVIDIA's index: types only
  "${pip[@]}" install --no-deps tensorrt-stubs==10.13.0.35.1
  "${pip[@]}" install --no-deps --no-build-isolation -e .
  if "$venv/bin/python" -c "import triton" >/dev/null 2>&1; then
    echo "[bootstrap] error: triton got installed; transformers would route Qwen3.5 to GPU kernels" >&2
    exit 1
  fi
  echo "$want" > "$stamp"
fi

# --- ROS interface package (ros_ws/) --------------------------------------------------------
if [ -f "$root/scripts/build_ros_ws.sh" ]; then bash "$root/scripts/build_ros_ws.sh"; fi
say "ready: $venv"
