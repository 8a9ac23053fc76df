#!/usr/bin/env bash
# The main job (README): install what is missing, run the whole stack in the embedded simulator,
# and send it the demo mission; qwen_node runs the stand-in brain (models/brain-nvfp4, config/agent.yaml;
# `qwen_node.backend:=replay` plays the fixed script instead). The stack keeps running after the mission
# (watch it in the console, http://127.0.0.1:8080/) until Ctrl-C.
#   QWEN_STACK_MISSION="..."   the instruction (default: the fetch mission); "" starts the stack only
#   QWEN_STACK_APPROVE=0       leave approval requests to the console instead of approving them here
#   extra arguments go to `qwen-stack launch`, e.g. `bash scripts/demo.sh qwen_node.backend:=local qwen_node.model_dir:=DIR`
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/bootstrap.sh"
cd "$root"
export PYTHONUNBUFFERED=1
bin="$root/.venv/bin"
mission="${QWEN_STACK_MISSION-Find the red cube and bring it to the blue square.}"
console="http://127.0.0.1:8080/"   # where the console listens, as the arguments may have moved it
for a in "$@"; do
  case "$a" in console.port:=0) console="the address in the [console] line above" ;;
               console.port:=*) console="http://127.0.0.1:${a#console.port:=}/" ;; esac
done

"$bin/qwen-stack" launch --profile "${QWEN_STACK_PROFILE:-sim}" --status-period 30 "$@" &
launch_pid=$!
task_pid=""
stop() {
  [ -n "$task_pid" ] && kill -INT "$task_pid" 2>/dev/null
  kill -INT "$launch_pid" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap 'stop; exit 130' INT TERM

if [ -n "$mission" ]; then
  approve=(--approve)
  [ "${QWEN_STACK_APPROVE:-1}" = 0 ] && approve=()
  echo "[demo] mission: $mission"
  "$bin/qwen-stack" task "${approve[@]}" --wait-node 120 --wait-server 120 --wait-odom 120 "$mission" &
  task_pid=$!
  # Whichever ends first: a stack that stopped (a node could not start) ends the demo, with its exit code.
  set +e
  wait -n -p ended "$launch_pid" "$task_pid"
  rc=$?
  set -e
  if [ "$ended" = "$launch_pid" ]; then
    kill -INT "$task_pid" 2>/dev/null || true
    wait "$task_pid" 2>/dev/null || true
    echo "[demo] the stack stopped (exit code $rc) before the mission ended; see the lines above." >&2
    exit $(( rc == 0 ? 1 : rc ))   # a demo whose mission never ended did not succeed
  fi
  task_pid=""
  if [ "$rc" = 0 ]; then
    echo "[demo] mission finished. The stack keeps running; console: $console . Ctrl-C stops it."
  else
    echo "[demo] mission did not succeed (see above). The stack keeps running; Ctrl-C stops it."
  fi
fi
set +e
wait "$launch_pid"
exit $?
