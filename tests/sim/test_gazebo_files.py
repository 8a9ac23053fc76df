"""Static checks of the Gazebo files (gz sim cannot run here): SDF, bridge YAML, launch file."""
from __future__ import annotations

import ast
import importlib
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from qwen_stack import topics
from qwen_stack.paths import SOURCE_ROOT
from qwen_stack.sim import gazebo_world
from qwen_stack.sim.scenario import load_layout
from qwen_stack.robot import load_robot
from qwen_stack.sim.world import joint_names

GZ = gazebo_world.GAZEBO_DIR
BRIDGE = yaml.safe_load((GZ / "bridge.yaml").read_text())
# ros_gz_bridge's message pairs for the types used here.
BRIDGE_PAIRS = {
    "rosgraph_msgs/msg/Clock": "gz.msgs.Clock", "geometry_msgs/msg/Twist": "gz.msgs.Twist",
    "nav_msgs/msg/Odometry": "gz.msgs.Odometry", "sensor_msgs/msg/JointState": "gz.msgs.Model",
    "sensor_msgs/msg/Image": "gz.msgs.Image", "sensor_msgs/msg/CameraInfo": "gz.msgs.CameraInfo",
    "sensor_msgs/msg/LaserScan": "gz.msgs.LaserScan", "tf2_msgs/msg/TFMessage": "gz.msgs.Pose_V",
}
STANDARD_GLOBAL_TOPICS = {"/tf": "tf2_msgs/TFMessage"}  # ROS conventions, not in topics.py


def _stack_topics() -> dict[str, str]:
    """ROS name -> 'pkg/Type' from the comments of qwen_stack/topics.py (its documented types)."""
    out = {}
    for line in Path(topics.__file__).read_text().splitlines():
        m = re.match(r'^([A-Z_]+)\s*=\s*"([^"]+)"\s*#\s*([\w]+/\w+)', line)
        if m:
            out[m.group(2)] = m.group(3)
    return out


def _robot() -> ET.Element:
    return ET.parse(GZ / f"{gazebo_world.ROBOT_MODEL}.sdf").getroot()


def _world() -> ET.Element:
    return ET.parse(GZ / "fetch_red_cube.sdf").getroot()


def test_committed_sdf_is_what_the_generator_writes(tmp_path):
    world, robot, _ = gazebo_world.write_files("fetch_red_cube", None, tmp_path)
    assert world.read_text() == (GZ / "fetch_red_cube.sdf").read_text(), \
        "regenerate: python -m qwen_stack.sim.gazebo_world"
    assert robot.read_text() == (GZ / f"{gazebo_world.ROBOT_MODEL}.sdf").read_text()


def test_world_sdf_has_the_systems_and_the_scenario():
    root = _world()
    assert root.tag == "sdf" and root.get("version") == "1.9"
    world = root.find("world")
    plugins = {p.get("filename"): p.get("name") for p in world.findall("plugin")}
    assert plugins["gz-sim-physics-system"] == "gz::sim::systems::Physics"
    assert plugins["gz-sim-sensors-system"] == "gz::sim::systems::Sensors"
    assert plugins["gz-sim-scene-broadcaster-system"] == "gz::sim::systems::SceneBroadcaster"
    assert plugins["gz-sim-user-commands-system"] == "gz::sim::systems::UserCommands"
    models = {m.get("name"): m for m in world.findall("model")}
    layout = load_layout("fetch_red_cube")
    for name in ["ground_plane", "wall_north", "wall_south", "wall_east", "wall_west"] + \
            [o.name for o in layout.objects] + [a.name for a in layout.areas]:
        assert name in models, name
    cube = next(o for o in layout.objects if o.name == "red_cube")
    pose = [float(v) for v in models["red_cube"].find("pose").text.split()]
    assert pose[:2] == pytest.approx([cube.pose.x, cube.pose.y], abs=1e-5)
    assert models["red_cube"].find("link/inertial/mass") is not None
    assert models["blue_square"].find("link/collision") is None  # paint, not an obstacle
    assert float(world.find("physics/max_step_size").text) == 0.002


def test_robot_sdf_matches_the_mujoco_robot():
    model = _robot().find("model")
    spec = load_robot()
    links = {link.get("name") for link in model.findall("link")}
    assert {"base_link", "left_wheel", "right_wheel", "camera_pan_link", "camera_link", "laser"} <= links
    joints = {j.get("name"): j for j in model.findall("joint")}
    for j in joints.values():
        assert j.find("parent").text in links and j.find("child").text in links, j.get("name")
    for name in joint_names(spec):
        assert joints[name].get("type") == "revolute"
    plugins = {p.get("filename"): p for p in model.findall("plugin")}
    dd = plugins["gz-sim-diff-drive-system"]
    assert dd.get("name") == "gz::sim::systems::DiffDrive"
    assert (dd.find("left_joint").text, dd.find("right_joint").text) == ("left_wheel_joint", "right_wheel_joint")
    assert float(dd.find("wheel_radius").text) == spec.wheel_radius
    assert float(dd.find("wheel_separation").text) == spec.wheel_separation
    assert (dd.find("frame_id").text, dd.find("child_frame_id").text) == ("odom", "base_link")
    jsp = plugins["gz-sim-joint-state-publisher-system"]
    assert [e.text for e in jsp.findall("joint_name")] == list(joint_names(spec))
    assert plugins["gz-sim-odometry-publisher-system"].find("odom_frame").text == "world"

    sensors = {s.get("type"): s for s in model.iter("sensor")}
    cam, lidar = sensors["camera"], sensors["gpu_lidar"]
    assert (int(cam.find("camera/image/width").text), int(cam.find("camera/image/height").text)) == (320, 240)
    assert float(cam.find("update_rate").text) == 15.0
    assert cam.find("gz_frame_id").text == "camera_optical_frame"
    assert int(lidar.find("lidar/scan/horizontal/samples").text) == 360
    assert float(lidar.find("update_rate").text) == 10.0
    assert lidar.find("gz_frame_id").text == "laser"


def test_bridge_entries_are_complete_and_supported():
    assert isinstance(BRIDGE, list) and BRIDGE
    for entry in BRIDGE:
        assert set(entry) == {"ros_topic_name", "gz_topic_name", "ros_type_name", "gz_type_name", "direction"}
        assert entry["direction"] in ("GZ_TO_ROS", "ROS_TO_GZ", "BIDIRECTIONAL")
        assert BRIDGE_PAIRS.get(entry["ros_type_name"]) == entry["gz_type_name"], entry


def test_every_bridged_topic_is_a_stack_topic_with_the_same_type():
    stack = {**_stack_topics(), **STANDARD_GLOBAL_TOPICS}
    for entry in BRIDGE:
        name, ros_type = entry["ros_topic_name"], entry["ros_type_name"]
        assert name in stack, f"{name} is not a topic of qwen_stack/topics.py"
        assert ros_type.replace("/msg/", "/") == stack[name], f"{name}: {ros_type} vs topics.py {stack[name]}"
        pkg, _, cls = ros_type.split("/")
        try:
            module = importlib.import_module(f"{pkg}.msg")
        except ImportError:
            assert pkg == "tf2_msgs", f"{pkg} should be importable here"  # tf2_msgs: no pip wheel here
            continue
        assert hasattr(module, cls)


def test_bridge_covers_what_the_mujoco_sim_offers_and_gz_topics_exist():
    bridged = {e["ros_topic_name"]: e for e in BRIDGE}
    for name in (topics.CLOCK, topics.BASE_CMD_VEL, topics.ODOM, topics.SIM_GROUND_TRUTH, topics.JOINT_STATES,
                 topics.CAMERA_IMAGE, topics.CAMERA_INFO, topics.SCAN):
        assert name in bridged, name
    assert bridged[topics.CLOCK]["direction"] == "GZ_TO_ROS"
    assert bridged[topics.BASE_CMD_VEL]["direction"] == "ROS_TO_GZ"
    assert all(e["direction"] == "GZ_TO_ROS" for n, e in bridged.items() if n != topics.BASE_CMD_VEL)
    text = (GZ / "bridge.yaml").read_text()
    for missing in (topics.CAMERA_COMPRESSED, topics.SIM_OBJECTS):  # documented as not bridged
        assert missing not in bridged and missing in text
    sdf_text = (GZ / f"{gazebo_world.ROBOT_MODEL}.sdf").read_text()
    for e in BRIDGE:
        if e["gz_topic_name"] != "/clock":
            assert f">{e['gz_topic_name']}<" in sdf_text, f"gz topic {e['gz_topic_name']} is not set in the SDF"


def test_launch_file_wires_gz_sim_spawn_and_bridge():
    path = SOURCE_ROOT / "launch" / "sim_gazebo.launch.py"
    source = path.read_text()
    tree = ast.parse(source)
    assert any(isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description" for n in tree.body)
    for needle in ("gz_sim.launch.py", '"ros_gz_sim", executable="create"', '"ros_gz_bridge"',
                   'executable="parameter_bridge"', "config_file", "BRIDGE_CONFIG", "-file", "-Y"):
        assert needle in source, needle
    assert gazebo_world.GAZEBO_DIR / "bridge.yaml" == (GZ / "bridge.yaml")
