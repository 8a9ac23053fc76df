"""qwen_node: camera in, Qwen3.5 reasoning, tool calls out (thin rclpy shell around agent/).

Executor: MultiThreadedExecutor. The RunTask goal runs the planner in its own (mutually
exclusive) callback group for as long as the task lasts; sensor callbacks, e-stop / teleop
state and service responses run in a reentrant group on the other threads, so an e-stop latch
cancels the task while a model turn or a service call is in progress.
"""
from __future__ import annotations

import json
import logging
import sys
import threading
import time

from qwen_stack import topics
from qwen_stack.paths import config_file


def main(argv: list[str] | None = None) -> int:
    from qwen_stack.rosenv import apply_to_current_process

    apply_to_current_process()
    # the engine and the backends log through Python logging (compile, TensorRT fallback): show it beside ROS's
    logging.basicConfig(level=logging.INFO, format="[%(levelname)s] [%(name)s]: %(message)s")
    import rclpy
    from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor

    from qwen_stack.qwen_node.agent_node import AgentNode

    rclpy.init(args=sys.argv if argv is None else argv)
    try:
        node = AgentNode()
    except ValueError as exc:  # bad parameters / registry: say which and stop
        print(f"qwen_node: {exc}", file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    executor = MultiThreadedExecutor(num_threads=4)
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
