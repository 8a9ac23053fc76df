#!/usr/bin/env bash
# The main job (README): install what is missing, then run the whole stack in the embedded simulator.
# Extra arguments go to `qwen-stack launch`, e.g. `bash scripts/demo.sh --duration 60`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/bootstrap.sh"
cd "$root"
export MUJOCO_GL=egl PYTHONUNBUFFERED=1
exec "$root/.venv/bin/qwen-stack" launch --profile "${QWEN_STACK_PROFILE:-camera}" "$@"
