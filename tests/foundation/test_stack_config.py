"""One source of truth: the stack YAML drives both ros2 launch and the pip launcher."""
from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import pytest
import yaml

from qwen_stack.launcher import node_command, parse_overrides, write_params_file
from qwen_stack.paths import SOURCE_ROOT
from qwen_stack.stack_config import StackConfigError, load_stack

LAUNCH_FILE = SOURCE_ROOT / "launch" / "bringup.launch.py"


class _Recorder:
    """Test double for launch/launch_ros classes: records constructor arguments."""

    made: list = []

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs
        type(self).made.append(self)


def _fake_launch_modules(monkeypatch, launch_args: dict):
    """Install test doubles of `launch` and `launch_ros` (no wheels exist for them)."""
    launch = types.ModuleType("launch")
    actions = types.ModuleType("launch.actions")
    subs = types.ModuleType("launch.substitutions")
    launch_ros = types.ModuleType("launch_ros")
    ros_actions = types.ModuleType("launch_ros.actions")

    class LaunchDescription(list):
        pass

    class DeclareLaunchArgument(_Recorder):
        made = []

    class OpaqueFunction(_Recorder):
        made = []

    class LaunchConfiguration:
        def __init__(self, name):
            self.name = name

        def perform(self, context):
            return context[self.name]

    class Node(_Recorder):
        made = []

    launch.LaunchDescription = LaunchDescription
    actions.DeclareLaunchArgument, actions.OpaqueFunction = DeclareLaunchArgument, OpaqueFunction
    subs.LaunchConfiguration = LaunchConfiguration
    ros_actions.Node = Node
    for name, mod in {"launch": launch, "launch.actions": actions, "launch.substitutions": subs,
                      "launch_ros": launch_ros, "launch_ros.actions": ros_actions}.items():
        monkeypatch.setitem(sys.modules, name, mod)
    return Node, OpaqueFunction


def _launch_file_nodes(monkeypatch, **launch_args):
    node_cls, opaque_cls = _fake_launch_modules(monkeypatch, launch_args)
    spec = importlib.util.spec_from_file_location("bringup_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    declared = {a.args[0] if a.args else a.kwargs["name"]: a.kwargs.get("default_value")
                for a in description if type(a).__name__ == "DeclareLaunchArgument"}
    context = {**declared, **launch_args}
    opaque = [a for a in description if isinstance(a, opaque_cls)]
    assert len(opaque) == 1
    return opaque[0].kwargs["function"](context)


def _params_from_command(cmd: list[str]) -> dict:
    path = Path(cmd[cmd.index("--params-file") + 1])
    return yaml.safe_load(path.read_text())["/**"]["ros__parameters"]


@pytest.mark.parametrize("namespace", ["", "robot1"])
def test_launch_file_and_pip_launcher_start_the_same_nodes(monkeypatch, tmp_path, namespace):
    stack = load_stack("stack.yaml", namespace=namespace or None)
    for profile in [None, *stack.profiles]:
        nodes = _launch_file_nodes(monkeypatch, profile=profile or "", namespace=namespace, stack="stack.yaml")
        specs = stack.select(profile)
        assert [n.kwargs["name"] for n in nodes] == [s.name for s in specs]
        for node, spec in zip(nodes, specs):
            cmd = node_command(spec, write_params_file(spec, tmp_path))
            assert node.kwargs["executable"] == spec.executable and node.kwargs["package"] == "qwen_stack"
            assert node.kwargs["parameters"] == [_params_from_command(cmd)]
            assert dict(node.kwargs["remappings"]) == dict(
                a.split(":=") for a in cmd[cmd.index("--ros-args"):] if ":=" in a and not a.startswith("__"))
            want_ns = f"/{namespace}" if namespace else ""
            assert node.kwargs["namespace"] == want_ns
            assert (f"__ns:={want_ns}" in cmd) == bool(namespace)


def test_params_files_merge_then_inline_overrides(tmp_path):
    cfg = tmp_path / "stack.yaml"
    (tmp_path / "a.yaml").write_text(yaml.safe_dump({
        "/**": {"ros__parameters": {"slowdown_ratio": 0.4, "approval_timeout": 10.0}},
        "other_node": {"ros__parameters": {"slowdown_ratio": 9.0, "no_such_parameter": 1}},
        "sup": {"ros__parameters": {"keep_out": {"table": [1.0, 1.0, 2.0, 1.0, 2.0, 2.0]}}}}))
    cfg.write_text(yaml.safe_dump({"nodes": {"sup": {"executable": "safety_supervisor",
                                                     "param_files": [str(tmp_path / "a.yaml")],
                                                     "parameters": {"approval_timeout": 20.0}}}}))
    stack = load_stack(str(cfg), overrides=parse_overrides(["sup.slowdown_ratio:=0.25"]))
    assert stack.nodes["sup"].parameters() == {"slowdown_ratio": 0.25, "approval_timeout": 20.0,
                                               "keep_out.table": [1.0, 1.0, 2.0, 1.0, 2.0, 2.0],
                                               "robot_file": str(SOURCE_ROOT / "config" / "robot.yaml")}


@pytest.mark.parametrize("nodes, message", [
    ({}, "'nodes' must be a non-empty mapping"),
    ({"cam": {}}, "nodes.cam.executable is required"),
    ({"cam": {"executable": "camera_node", "required": "yes"}}, "nodes.cam.required"),
    ({"cam": {"executable": "camera_node", "param_files": ["missing.yaml"]}}, "missing.yaml not found"),
    ({"cam": {"executable": "camera_node", "parameters": {"x": {"y": None}}}}, "parameter 'x.y'"),
    ({"cam": {"executable": "camera_node", "exe": 1}}, "unknown keys"),
    ({"9cam": {"executable": "camera_node"}}, "node name"),
])
def test_invalid_stack_files_name_the_problem(tmp_path, nodes, message):
    cfg = tmp_path / "stack.yaml"
    cfg.write_text(yaml.safe_dump({"nodes": nodes}))
    with pytest.raises(StackConfigError, match=message.replace(".", r"\.").replace("'", ".")):
        load_stack(str(cfg))


def test_unknown_profile_and_bad_namespace(tmp_path):
    with pytest.raises(StackConfigError, match="unknown profile 'nope'"):
        load_stack("stack.yaml").select("nope")
    with pytest.raises(StackConfigError, match="namespace"):
        load_stack("stack.yaml", namespace="1 bad")
    with pytest.raises(StackConfigError, match="node.parameter:=value"):
        parse_overrides(["fps=3"])


def test_one_robot_for_every_node_that_reads_one(tmp_path):
    """The stack's `robot:` goes to every node declaring robot_file; a node's own is refused, wherever given."""
    from qwen_stack.robot import load_robot, robot_to_dict

    robot = tmp_path / "my_robot.yaml"
    robot.write_text(yaml.safe_dump(robot_to_dict(load_robot())))
    cfg = tmp_path / "stack.yaml"
    nodes = {"skills": {"executable": "skills_node"}, "sim": {"executable": "sim_node"},
             "cam": {"executable": "camera_node"}}
    cfg.write_text(yaml.safe_dump({"robot": str(robot), "nodes": nodes}))
    stack = load_stack(str(cfg))
    assert stack.robot_file == robot.resolve()
    assert {n: s.parameters().get("robot_file") for n, s in stack.nodes.items()} == {
        "skills": str(robot.resolve()), "sim": str(robot.resolve()), "cam": None}
    assert load_stack("stack.yaml").nodes["sim"].parameters()["robot_file"] == str(
        (SOURCE_ROOT / "config" / "robot.yaml").resolve())
    with pytest.raises(StackConfigError, match=r"sim\.robot_file is the stack's, not one node's \(given in the "
                                               r"command line\): set `robot:` at the top of"):
        load_stack(str(cfg), overrides=parse_overrides([f"sim.robot_file:={robot}"]))
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({"/**": {"ros__parameters": {"robot_file": str(robot)}}}))
    cfg.write_text(yaml.safe_dump({"nodes": {"skills": {"executable": "skills_node",
                                                        "param_files": [str(tmp_path / "p.yaml")]}}}))
    with pytest.raises(StackConfigError, match=r"skills\.robot_file is the stack's.*p\.yaml"):
        load_stack(str(cfg))
    cfg.write_text(yaml.safe_dump({"nodes": {"skills": {"executable": "skills_node",
                                                        "parameters": {"robot_file": str(robot)}}}}))
    with pytest.raises(StackConfigError, match=r"skills\.robot_file is the stack's.*nodes\.skills\.parameters"):
        load_stack(str(cfg))


def test_a_robot_that_cannot_be_used_stops_the_stack_naming_the_key(tmp_path):
    from qwen_stack.robot import load_robot, robot_to_dict

    robot = tmp_path / "bad_robot.yaml"
    robot.write_text(yaml.safe_dump({**robot_to_dict(load_robot()), "max_linear_vel": -0.5}))
    cfg = tmp_path / "stack.yaml"
    cfg.write_text(yaml.safe_dump({"robot": str(robot), "nodes": {"cam": {"executable": "camera_node"}}}))
    with pytest.raises(StackConfigError, match=r"(?s)robot: .*bad_robot\.yaml: .*max_linear_vel: must be > 0"):
        load_stack(str(cfg))
    cfg.write_text(yaml.safe_dump({"robot": "", "nodes": {"cam": {"executable": "camera_node"}}}))
    with pytest.raises(StackConfigError, match="robot must name the robot description"):
        load_stack(str(cfg))
