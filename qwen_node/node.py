"""qwen_node: camera in, Qwen3.5 reasoning, tool calls out (thin rclpy shell around agent/).

Executor: MultiThreadedExecutor. The RunTask goal runs the planner in its own (mutually
exclusive) callback group for as long as the task lasts; sensor callbacks, e-stop / teleop
state and service responses run in a reentrant group on the other threads, so an e-stop latch
cancels the task while a model turn or a service call is in progress.
"""
from __future__ import annotations

import logging
import sys


def main(argv: list[str] | None = None) -> int:
    from qwen_stack.rosenv import apply_to_current_process

    apply_to_current_process()
    # the engine and the backends log through Python logging (compile, TensorRT fallback): show it beside ROS's
    logging.basicConfig(level=logging.INFO, format="[%(levelname)s] [%(name)s]: %(message)s")
    from qwen_stack.node_main import run_node
    from qwen_stack.qwen_node.agent_node import AgentNode

    # bad parameters / registry (ValueError): say which and stop
    return run_node("qwen_node", AgentNode, argv=argv, config_errors=(ValueError,), threads=4,
                    on_stop=lambda node: node.shutdown())


if __name__ == "__main__":
    sys.exit(main())
