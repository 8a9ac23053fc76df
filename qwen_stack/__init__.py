"""qwen_stack: a ROS 2 perception-and-planning stack around a Qwen3.5 vision-language model."""

__version__ = "0.1.0"
