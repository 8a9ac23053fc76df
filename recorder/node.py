"""recorder_node: records the stack's topics into MCAP (rosbag2 layout) with the pure writer in bag_writer.py.

Thin shell: topics are found on the graph (a configured topic is subscribed once a publisher offers it, with
the type and QoS the publishers offer, as `ros2 bag record` does), messages arrive serialized (raw=True: no
decode or encode), the camera goes through a RateThrottle, everything else is written as received. One
SingleThreadedExecutor runs every callback, so the writer has one caller. SIGINT and SIGTERM (node_main)
end the spin; the file is then closed with its summary. A `kill -9` loses at most the chunk in
progress, flushed every flush_period_s. Bad parameters exit with code 2 and a message naming the parameter.
"""
from __future__ import annotations

import sys

from qwen_stack.node_main import run_node
from qwen_stack.rosenv import apply_to_current_process


def main(argv: list[str] | None = None) -> int:
    apply_to_current_process()
    try:
        from qwen_stack.recorder.config import RecorderConfigError
        from qwen_stack.recorder.schema import DefinitionError
        from qwen_stack.recorder.recorder_node import RecorderNode as node_cls
    except ImportError as exc:
        print(f"recorder_node: cannot import ROS ({exc}); run in the stack's environment", file=sys.stderr)
        return 2
    return run_node("recorder_node", node_cls, argv=argv,
                    config_errors=(RecorderConfigError, DefinitionError, OSError), on_stop=lambda node: node.close())


if __name__ == "__main__":
    sys.exit(main())
