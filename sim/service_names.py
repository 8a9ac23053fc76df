"""Services the simulator itself offers (the skills node calls them; a real robot has its own).

To move into qwen_stack/topics.py with the other names (lead's file); kept here until then.
"""
SIM_ATTACH = "sim/attach"    # qwen_stack_interfaces/Grasp: magnetic pick of the named/nearest object
SIM_DETACH = "sim/detach"    # qwen_stack_interfaces/Release: drop the held object
SIM_SET_PAN = "sim/set_pan"  # qwen_stack_interfaces/LookAt: camera pan target, radians (+ left)
