"""safety_supervisor: thin lifecycle node around the pure safety core (qwen_stack.safety.supervisor_core).

Inputs: cmd_vel/autonomy, cmd_vel/teleop, teleop/lock, scan, odom, safety/estop, operator/heartbeat.
Output: cmd_vel (this node is its only publisher), safety/verdict, safety/estop_latched, /diagnostics.
Services: safety/call_tool (proxy for actuating services), safety/cancel_calls, safety/trigger_estop,
safety/reset_estop, safety/approve. The node configures and activates itself at start; bad parameters exit with code 2.
No callback dies on its input: an exception in a control-path callback is logged and audited and the base
is sent zero; in the proxy's callbacks it becomes a refusal with its reason (see `_guarded`).
"""
from __future__ import annotations

import sys
import threading

from qwen_stack.node_main import run_node, shutdown_executor, spin_until
from qwen_stack.rosenv import apply_to_current_process


def main(argv: list[str] | None = None) -> int:
    apply_to_current_process()
    try:
        from rclpy.executors import MultiThreadedExecutor
        from rclpy.lifecycle import TransitionCallbackReturn

        from qwen_stack.safety.supervisor_node import SafetySupervisor as node_cls
    except ImportError as exc:
        print(f"safety_supervisor: cannot import ROS or qwen_stack_interfaces ({exc}); "
              "build ros_ws (scripts/build_ros_ws.sh) and run in the stack's environment", file=sys.stderr)
        return 2
    proxy: dict = {}

    def start(node, stop) -> int | None:
        if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            print(node.config_error or "safety_supervisor: configure failed", file=sys.stderr)
            return 2
        node.trigger_activate()
        proxy["executor"] = ex = MultiThreadedExecutor(num_threads=3)   # see SafetySupervisor.__init__ for why two
        ex.add_node(node.proxy_node)
        proxy["thread"] = threading.Thread(target=spin_until, args=(ex, stop), name="tool_proxy", daemon=True)
        proxy["thread"].start()
        return None

    def on_stop(node) -> None:
        if "thread" in proxy:
            proxy["thread"].join(timeout=2.0)          # `stop` is set: it ends within one spin slice
            shutdown_executor(proxy["executor"], timeout_sec=1.0)
        if getattr(node, "proxy_node", None) is not None:
            node.proxy_node.destroy_node()
        if hasattr(node, "reporter"):                  # configured: leave the base stopped, with its verdict
            node.send_zero("supervisor stopping")
            # the process ends next: give the reliable readers (the base driver) the verdict and the zero first
            from rclpy.duration import Duration
            for pub in (node.verdict_pub, node.cmd_pub):
                pub.wait_for_all_acked(Duration(seconds=1.0))

    return run_node("safety_supervisor", node_cls, argv=argv, start=start, on_stop=on_stop)


if __name__ == "__main__":
    sys.exit(main())
