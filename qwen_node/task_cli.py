"""`qwen-stack task "INSTRUCTION"`: send one RunTask goal to qwen_node and print what happens.

Prints the model's thinking (one line per burst), each tool call and its result, and the final
result, in whole lines; exits 0 on success, 1 on failure, 2 on an empty instruction or when
qwen_node is not there (after --wait-node seconds when no qwen_node runs at all).
`--approve` makes this command the operator for the task: it approves every approval request
the safety supervisor publishes while the task runs (the person running the command decides
that; without it, requests wait for the console and time out as denied).
"""
from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from typing import TextIO

START_HINT = "start the stack first: `bash scripts/demo.sh` or `.venv/bin/qwen-stack launch --profile sim`"


class FeedbackPrinter:
    """RunTask feedback as whole lines. The model's answer arrives in pieces: it is printed a line at a
    time (blank lines dropped), and a line left open is ended before anything else is printed, so the
    answer never runs into the next line (other processes print to the same terminal)."""

    def __init__(self, out: TextIO, quiet_thinking: bool = False, max_chars: int = 200) -> None:
        self.out, self.quiet_thinking, self.max_chars = out, quiet_thinking, max_chars
        self.partial = ""
        self.lock = threading.Lock()  # feedback and approval requests arrive on two executor threads

    def _line(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def _end_text(self) -> None:
        if self.partial.strip():
            self._line(self.partial.rstrip())
        self.partial = ""

    def end_text(self) -> None:
        with self.lock:
            self._end_text()

    def text(self, chunk: str) -> None:
        with self.lock:
            *lines, self.partial = (self.partial + chunk).split("\n")
            for line in lines:
                if line.strip():
                    self._line(line.rstrip())

    def thinking(self, text: str) -> None:
        with self.lock:
            self._end_text()
            words = " ".join(text.split())
            if words and not self.quiet_thinking:
                self._line("  (thinking) " + words[:self.max_chars])

    def other(self, line: str) -> None:
        """A tool call, a result, a status or the outcome: one line of its own."""
        with self.lock:
            self._end_text()
            self._line(line)


def instruction_problem(instruction: str) -> str | None:
    """Why `instruction` cannot be sent (qwen_node refuses the same), or None."""
    if not instruction.strip():
        return "the instruction is empty: say what the robot should do, e.g. qwen-stack task \"Find the red cube.\""
    return None


def missing_server_message(action: str, node_running: bool, waited_s: float) -> str:
    """What to tell the user when no action server answered (pure; the shell decides `node_running`)."""
    if node_running:
        return (f"qwen-stack task: qwen_node is running but its action server {action} did not come up within "
                f"{waited_s:g} s (a model still loading?); try again or pass --wait-server SECONDS")
    return f"qwen-stack task: no qwen_node is running (no action server {action} after {waited_s:g} s); {START_HINT}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="qwen-stack task", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("instruction", help="the task in natural language, any language")
    ap.add_argument("--max-steps", type=int, default=0, help="tool-call budget (0: the node's default)")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the result")
    ap.add_argument("--wait-node", type=float, default=5.0,
                    help="seconds to wait for a qwen_node to appear (raise it for a stack that is starting)")
    ap.add_argument("--wait-server", type=float, default=60.0,
                    help="seconds to wait for the action server of a running qwen_node (a model may be loading)")
    ap.add_argument("--wait-odom", type=float, default=0.0,
                    help="first wait up to this many seconds for odometry (the robot is up); 0: do not wait")
    ap.add_argument("--approve", action="store_true", help="act as the operator: approve approval requests")
    ap.add_argument("--quiet-thinking", action="store_true", help="do not print the model's thinking")
    args, ros_args = ap.parse_known_args(argv)
    if args.max_steps < 0 or args.timeout <= 0 or args.wait_node < 0 or args.wait_server < 0:
        print("qwen-stack task: --max-steps, --wait-node and --wait-server must be >= 0 and --timeout > 0",
              file=sys.stderr)
        return 2
    problem = instruction_problem(args.instruction)
    if problem:
        print(f"qwen-stack task: {problem}", file=sys.stderr)
        return 2
    # Started in the background by a script, SIGINT arrives ignored: Ctrl-C must still cancel the task.
    signal.signal(signal.SIGINT, signal.default_int_handler)

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
    printer = FeedbackPrinter(sys.stdout, args.quiet_thinking)
    try:
        client = ActionClient(node, RunTask, topics.AGENT_RUN_TASK, feedback_sub_qos_profile=QoSProfile(depth=200))
        if args.approve:
            approve = node.create_client(Approve, topics.SAFETY_APPROVE)

            def on_request(m):
                printer.other(f"[operator] approving {m.service} {m.arguments_json}")
                approve.call_async(Approve.Request(request_id=m.request_id, approved=True, operator_name="qwen-stack task"))

            node.create_subscription(ApprovalRequest, topics.SAFETY_APPROVAL_REQUEST, on_request, 10)

        def qwen_node_running() -> bool:
            return any(name == "qwen_node" and ns == node.get_namespace()
                       for name, ns in node.get_node_names_and_namespaces())

        start, told = time.monotonic(), False
        while not client.server_is_ready():
            waited = time.monotonic() - start
            running = qwen_node_running()
            if waited >= args.wait_server or (not running and waited >= args.wait_node):
                action = node.get_namespace().rstrip("/") + "/" + topics.AGENT_RUN_TASK
                print(missing_server_message(action, running, round(waited)), file=sys.stderr)
                return 2
            if running and not told and waited >= 5.0:
                told = True
                print(f"qwen-stack task: waiting up to {args.wait_server:g} s for qwen_node's action server",
                      file=sys.stderr, flush=True)
            time.sleep(0.1)
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
            if fb.kind == "thinking":
                printer.thinking(fb.text)
            elif fb.kind == "text":
                printer.text(fb.text)
            elif fb.kind == "tool_call":
                printer.other(f"-> {fb.tool_call.name} {fb.tool_call.arguments_json}")
            elif fb.kind == "tool_result":
                printer.other(f"<- {fb.tool_call.name}: {fb.tool_call.status} {fb.tool_call.result_json[:300]}")
            elif fb.kind == "status":
                printer.other(f"[status] {fb.text}")

        goal = RunTask.Goal(instruction=args.instruction, max_steps=args.max_steps)
        fut = client.send_goal_async(goal, feedback_callback=on_feedback)
        end = time.monotonic() + 30
        while not fut.done() and time.monotonic() < end:
            time.sleep(0.02)
        if not fut.done() or not fut.result().accepted:
            print("qwen-stack task: qwen_node refused the task (another task running?)", file=sys.stderr)
            return 1
        handle = fut.result()
        res = handle.get_result_async()
        end = time.monotonic() + args.timeout
        try:
            while not res.done() and time.monotonic() < end:
                time.sleep(0.05)
        except KeyboardInterrupt:
            handle.cancel_goal_async()
            printer.end_text()
            print("cancelling the task", file=sys.stderr)
            time.sleep(1.0)
            return 1
        if not res.done():
            handle.cancel_goal_async()
            print(f"qwen-stack task: no result within {args.timeout} s; cancelled", file=sys.stderr)
            return 1
        r = res.result().result
        printer.other(f"{'SUCCESS' if r.success else 'FAILED'} after {r.steps} tool calls: {r.message}")
        return 0 if r.success else 1
    except KeyboardInterrupt:  # before a task was sent: nothing to cancel
        return 130
    finally:
        ex.shutdown(timeout_sec=2.0)
        spinner.join(timeout=2.0)
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
