"""qwen_stack.sim: the embedded MuJoCo simulator (default) and the same robot for Gazebo.

Pure core (no ROS): scenario.py (YAML + seed -> WorldLayout), world.py (MJCF), diff_drive.py
(kinematics, motor driver timeout, wheel odometry), simulator.py (stepping API and sensors),
skill_control.py (closed-loop skills), stepping.py (sensor schedule), gazebo_world.py (SDF).
ROS shells: node.py (sim_node), skills_node.py (skills_node); ros_messages.py converts.
"""
