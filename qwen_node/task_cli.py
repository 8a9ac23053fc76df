"""`qwen-stack task "INSTRUCTION"`: send one RunTask goal to qwen_node and print what happens.

Prints the model's thinking (dimmed to one line per burst), each tool call and its result, and
the final result; exits 0 on success, 1 on failure, 2 when qwen_node is not there.
`--approve` makes this command the operator for the task: it approves every approval request
the safety supervisor publishes while the task runs (the person running the command decides
that; without it, requests wait for the console and time out as denied).
"""
from __future__ import annotations

import argparse
import sys
import threading
import time


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="qwen-stack task", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("instruction", help="the task in natural language, any language")
    ap.add_argument("--max-steps", type=int, default=0, help="tool-call budget (0: the node's default)")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the result")
    ap.add_argument("--wait-server", type=float, default=60.0, help="seconds to wait for qwen_node")
    ap.add_argument("--wait-odom", type=float, default=0.0,
                    help="first wait up to this many seconds for odometry (the robot is up); 0: do not wait")
    ap.add_argument("--approve", action="store_true", help="act as the operator: approve approval requests")
    ap.add_argument("--quiet-thinking", action="store_true", help="do not print the model's thinking")
    args, ros_args = ap.parse_known_args(argv)
    if args.max_steps < 0 or args.timeout <= 0:
        print("qwen-stack task: --max-steps must be >= 0 and --timeout > 0", file=sys.stderr)
        return 2

    from qwen_stack.rosenv import apply_to_current_process

    apply_to_current_process()
    import rclpy
    from rclpy.action import ActionClient
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.qos import QoSProfile

    from qwen_stack import topics
    from qwen_stack_interfaces.action import RunTask
    from qwen_stack_interfaces.msg import ApprovalRequest
    from qwen_stack_interfaces.srv import Approve

    rclpy.init(args=["qwen_stack_task", *ros_args])
    node = rclpy.create_node("qwen_stack_task")
    ex = MultiThreadedExecutor(num_threads=2)
    ex.add_node(node)
    spinner = threading.Thread(target=ex.spin, daemon=True)
    spinner.start()
    try:
        client = ActionClient(node, RunTask, topics.AGENT_RUN_TASK, feedback_sub_qos_profile=QoSProfile(depth=200))
        if args.approve:
            approve = node.create_client(Approve, topics.SAFETY_APPROVE)

            def on_request(m):
                print(f"[operator] approving {m.service} {m.arguments_json}", flush=True)
                approve.call_async(Approve.Request(request_id=m.request_id, approved=True, operator_name="qwen-stack task"))

            node.create_subscription(ApprovalRequest, topics.SAFETY_APPROVAL_REQUEST, on_request, 10)
        if not client.wait_for_server(timeout_sec=args.wait_server):
            print(f"qwen-stack task: no qwen_node action server on {topics.AGENT_RUN_TASK}", file=sys.stderr)
            return 2
        if args.wait_odom > 0:
            from nav_msgs.msg import Odometry
            from rclpy.qos import qos_profile_sensor_data

            odom_seen = threading.Event()
            node.create_subscription(Odometry, topics.ODOM, lambda _m: odom_seen.set(), qos_profile_sensor_data)
            if not odom_seen.wait(args.wait_odom):
                print(f"qwen-stack task: no odometry on {topics.ODOM} within {args.wait_odom:g} s", file=sys.stderr)
                return 2
            time.sleep(1.0)  # let every node (skills, supervisor) see a few messages too

        def on_feedback(msg):
            fb = msg.feedback
            if fb.kind == "thinking" and not args.quiet_thinking:
                print("  (thinking) " + " ".join(fb.text.split())[:200], flush=True)
            elif fb.kind == "text":
                print(fb.text, end="", flush=True)
            elif fb.kind == "tool_call":
                print(f"\n-> {fb.tool_call.name} {fb.tool_call.arguments_json}", flush=True)
            elif fb.kind == "tool_result":
                print(f"<- {fb.tool_call.name}: {fb.tool_call.status} {fb.tool_call.result_json[:300]}", flush=True)
            elif fb.kind == "status":
                print(f"[status] {fb.text}", flush=True)

        goal = RunTask.Goal(instruction=args.instruction, max_steps=args.max_steps)
        fut = client.send_goal_async(goal, feedback_callback=on_feedback)
        end = time.monotonic() + 30
        while not fut.done() and time.monotonic() < end:
            time.sleep(0.02)
        if not fut.done() or not fut.result().accepted:
            print("qwen-stack task: goal not accepted (another task running?)", file=sys.stderr)
            return 1
        handle = fut.result()
        res = handle.get_result_async()
        end = time.monotonic() + args.timeout
        try:
            while not res.done() and time.monotonic() < end:
                time.sleep(0.05)
        except KeyboardInterrupt:
            handle.cancel_goal_async()
            print("\ncancelling the task", file=sys.stderr)
            time.sleep(1.0)
            return 1
        if not res.done():
            handle.cancel_goal_async()
            print(f"qwen-stack task: no result within {args.timeout} s; cancelled", file=sys.stderr)
            return 1
        r = res.result().result
        print(f"\n{'SUCCESS' if r.success else 'FAILED'} after {r.steps} tool calls: {r.message}")
        return 0 if r.success else 1
    finally:
        ex.shutdown(timeout_sec=2.0)
        spinner.join(timeout=2.0)
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
