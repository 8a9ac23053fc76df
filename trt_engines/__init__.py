"""qwen_stack.trt_engines"""
