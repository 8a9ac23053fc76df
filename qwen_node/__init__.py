"""qwen_stack.qwen_node"""
