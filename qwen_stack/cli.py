"""`qwen-stack`: one command, a subcommand per job. Each subcommand lives with its part."""
from __future__ import annotations

import importlib
import sys

# subcommand -> ("module:function", one-line help). The function takes argv (list[str]) and returns an exit code.
SUBCOMMANDS = {
    "launch": ("qwen_stack.launcher:main", "start the stack from a YAML configuration (pip-world ros2 launch)"),
    "task": ("qwen_stack.qwen_node.task_cli:main", "send a task to qwen_node and follow it"),
    "generate": ("qwen_stack.qwen_node.engine.cli:generate_main", "run the Qwen3.5 engine on a prompt, image or video"),
    "quantize": ("qwen_stack.qwen_node.engine.nvfp4_cli:quantize_main", "write an NVFP4 (ModelOpt-format) checkpoint"),
    "plan": ("qwen_stack.qwen_node.engine.memory_plan:main", "memory a deployment needs, as a table"),
    "serve": ("qwen_stack.qwen_node.engine.serve:main", "OpenAI-compatible HTTP API over the engine"),
    "export-onnx": ("qwen_stack.trt_engines.export:main", "export decoder layers to ONNX (TensorRT NVFP4 pattern)"),
    "build-engines": ("qwen_stack.trt_engines.build:main", "build TensorRT engines from exported ONNX"),
    "train-brain": ("qwen_stack.qwen_node.brain.train:main", "train the small stand-in model on generated missions"),
    "record": ("qwen_stack.recorder.cli:record_main", "record the stack's topics to MCAP (rosbag2 layout) until Ctrl-C"),
    "bag": ("qwen_stack.recorder.cli:bag_main", "read a recording: `bag summary FILE` prints the mission timeline"),
}


def _usage() -> str:
    lines = ["usage: qwen-stack <command> [options]", "", "commands:"]
    lines += [f"  {name:<14} {help_}" for name, (_, help_) in SUBCOMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(f"qwen-stack: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    from qwen_stack.rosenv import reexec_with_ros_environment

    reexec_with_ros_environment()  # commands that talk ROS need the interface package's libraries
    target, _ = SUBCOMMANDS[name]
    module, func = target.split(":")
    try:
        fn = getattr(importlib.import_module(module), func)
    except (ImportError, AttributeError) as exc:
        print(f"qwen-stack {name}: not available ({exc})", file=sys.stderr)
        return 2
    return int(fn(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
