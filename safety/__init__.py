"""qwen_stack.safety"""
