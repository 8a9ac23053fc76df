"""qwen_stack.console"""
