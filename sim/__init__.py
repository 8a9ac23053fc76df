"""qwen_stack.sim"""
