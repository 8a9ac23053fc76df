#!/usr/bin/env bash
# The test command (README, .ci/run): install what is missing, then run the whole suite.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh tests/safety -x`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/bootstrap.sh"
cd "$root"
export MUJOCO_GL=egl PYTHONUNBUFFERED=1
exec "$root/.venv/bin/python" -m qwen_stack.rosenv "$root/.venv/bin/python" -m pytest "$@"
