"""Gazebo (gz sim Harmonic/Ionic) instead of the embedded MuJoCo simulator, on the same ROS names.

    ros2 launch qwen_stack sim_gazebo.launch.py [scenario:=fetch_red_cube] [seed:=-1] [headless:=true]

Writes the scenario's world and the robot as SDF (qwen_stack.sim.gazebo_world), starts gz sim
(ros_gz_sim's gz_sim.launch.py), spawns the robot at the scenario's start pose (ros_gz_sim create),
bridges topics with ros_gz_bridge's parameter_bridge (sim/gazebo/bridge.yaml, /clock GZ_TO_ROS) and
publishes the robot's frames with robot_state_publisher from the stack's URDF. Needs a ROS 2 install with
ros_gz and robot_state_publisher (not the pip wheels).
"""
import tempfile
from pathlib import Path

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, OpaqueFunction
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from qwen_stack.sim.gazebo_world import GAZEBO_DIR, ROBOT_MODEL, write_files
from qwen_stack.sim.robot_description import urdf
from qwen_stack.robot import load_robot

BRIDGE_CONFIG = GAZEBO_DIR / "bridge.yaml"


def _world_and_robot(context):
    scenario = LaunchConfiguration("scenario").perform(context)
    seed = int(LaunchConfiguration("seed").perform(context))
    headless = LaunchConfiguration("headless").perform(context).lower() in ("1", "true", "yes")
    out = Path(tempfile.mkdtemp(prefix="qwen_stack_gz_"))
    world, robot, layout = write_files(scenario, None if seed < 0 else seed, out)
    start = layout.robot_start
    spec = load_robot()
    gz_args = f"{'-s ' if headless else ''}-r {world}"
    return [
        IncludeLaunchDescription(
            PythonLaunchDescriptionSource(PathJoinSubstitution(
                [FindPackageShare("ros_gz_sim"), "launch", "gz_sim.launch.py"])),
            launch_arguments={"gz_args": gz_args, "on_exit_shutdown": "true"}.items()),
        Node(package="ros_gz_sim", executable="create", name="spawn_robot", output="screen",
             arguments=["-file", str(robot), "-name", ROBOT_MODEL, "-x", f"{start.x:.4f}", "-y", f"{start.y:.4f}",
                        "-z", "0.0", "-Y", f"{start.yaw:.4f}"]),
        Node(package="ros_gz_bridge", executable="parameter_bridge", name="gz_bridge", output="screen",
             parameters=[{"config_file": str(BRIDGE_CONFIG), "use_sim_time": True}]),
        # The robot's frames from the same URDF the embedded simulator publishes (sim/robot_description.py):
        # fixed joints on /tf_static, the wheels and the camera pan from the bridged joint_states.
        Node(package="robot_state_publisher", executable="robot_state_publisher", name="robot_state_publisher",
             output="screen", parameters=[{"robot_description": urdf(spec), "use_sim_time": True}]),
    ]


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument("scenario", default_value="fetch_red_cube",
                              description="scenario in sim/scenarios/ or a YAML path"),
        DeclareLaunchArgument("seed", default_value="-1", description="placement seed; -1: the scenario's own"),
        DeclareLaunchArgument("headless", default_value="true", description="server only (no GUI)"),
        OpaqueFunction(function=_world_and_robot),
    ])
