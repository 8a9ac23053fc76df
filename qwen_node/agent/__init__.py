"""The agent: output parsing, tool registry, planner loop, backends, the camera frame window (ROS-free cores)."""
