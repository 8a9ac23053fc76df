"""The agent: output parsing, tool registry, planner loop, backends (ROS-free cores)."""
