"""ros2 launch qwen_stack bringup.launch.py [profile:=sim] [namespace:=robot1] [stack:=stack.yaml]

Starts the nodes of config/stack.yaml, exactly as `qwen-stack launch` does: both take the
node list and parameters from qwen_stack.stack_config.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from qwen_stack.stack_config import launch_ros_node_kwargs, load_stack


def _nodes(context, *args, **kwargs):
    profile = LaunchConfiguration("profile").perform(context) or None
    namespace = LaunchConfiguration("namespace").perform(context) or None
    stack = load_stack(LaunchConfiguration("stack").perform(context), namespace=namespace)
    return [Node(**launch_ros_node_kwargs(spec)) for spec in stack.select(profile)]


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument("stack", default_value="stack.yaml", description="stack file in config/"),
        DeclareLaunchArgument("profile", default_value="", description="node set (empty: all nodes)"),
        DeclareLaunchArgument("namespace", default_value="", description="robot namespace (empty: the file's)"),
        OpaqueFunction(function=_nodes),
    ])
