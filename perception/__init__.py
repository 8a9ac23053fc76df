"""Perception from the camera and the laser: coloured objects in an odom-frame memory (qwen_stack.perception)."""
