"""Every node of the stack refuses parameters it does not declare and values of the wrong type,
before anything starts (qwen_stack/parameter_schema.py, used by both launchers through load_stack)."""
from __future__ import annotations

import pytest
import yaml

from qwen_stack.launcher import parse_overrides
from qwen_stack.parameter_schema import PARAMETER_SCHEMAS, ParameterError, ParameterSchema, schema_for
from qwen_stack.stack_config import ROBOT_PARAMETER, StackConfigError, load_stack, read_ros_params_file

STACK = load_stack("stack.yaml")
NODES = list(STACK.nodes)  # every node of config/stack.yaml, including nodes added later


def _load(*overrides: str):
    return load_stack("stack.yaml", overrides=parse_overrides(list(overrides)))


@pytest.mark.parametrize("node", NODES)
def test_every_node_refuses_an_unknown_parameter(node):
    with pytest.raises(StackConfigError, match=rf"^{node}\.no_such_param: .* has no parameter 'no_such_param'"):
        _load(f"{node}.no_such_param:=1")


@pytest.mark.parametrize("node", NODES)
def test_every_node_refuses_a_one_letter_typo_of_each_parameter_and_suggests_the_name(node):
    for name in STACK.nodes[node].schema.defaults:
        typo = name[:-1] + ("x" if name[-1] != "x" else "y")
        if STACK.nodes[node].schema.default_of(typo)[0]:
            continue
        with pytest.raises(StackConfigError, match=rf"did you mean '{name}'"):
            _load(f"{node}.{typo}:=1")


@pytest.mark.parametrize("node", NODES)
def test_every_declared_parameter_takes_its_default_written_on_a_command_line(node):
    schema = STACK.nodes[node].schema
    for name, default in schema.defaults.items():
        if name == ROBOT_PARAMETER:
            continue   # the stack's own, refused per node (tests/foundation/test_stack_config.py)
        text = yaml.safe_dump(default, default_flow_style=True).strip().removesuffix("...").strip()
        text = default if isinstance(default, str) else text
        params = _load(f"{node}.{name}:={text}").nodes[node].parameters()
        assert params[name] == default and type(params[name]) is type(default), (name, text)


@pytest.mark.parametrize("node", NODES)
def test_every_node_declares_its_parameters_and_documents_each_in_its_param_files(node):
    """The schema is what the node reads; each of its parameters is set (and commented) in config/."""
    spec = STACK.nodes[node]
    assert spec.executable in PARAMETER_SCHEMAS
    in_files = set(spec.inline_parameters)
    for path in spec.param_files:
        in_files |= set(read_ros_params_file(path, node))
    assert set(spec.schema.defaults) == in_files


@pytest.mark.parametrize("override, message", [
    ("console.port:=abc", "console.port:=abc: expected an integer"),
    ("console.port:=8080.5", "console.port:=8080.5: expected an integer"),
    ("camera.fps:=fast", "camera.fps:=fast: expected a number"),
    ("camera.publish_raw:=yes", "camera.publish_raw:=yes: expected true or false"),
    ("safety_supervisor.geofence:=[0, 0, a, 1]", r"safety_supervisor.geofence\[2\]: expected a number"),
    ("safety_supervisor.geofence:=3", "safety_supervisor.geofence: expected a list"),
    ("console.prot:=9000", "console.prot: console_node has no parameter 'prot' .did you mean 'port'"),
    ("qwen_node.bakend:=local", "qwen_node.bakend: qwen_node has no parameter 'bakend' .did you mean 'backend'"),
])
def test_wrong_values_are_refused_naming_the_parameter(override, message):
    with pytest.raises(StackConfigError, match=message):
        _load(override)


def test_values_are_read_by_the_declared_type():
    params = lambda node, *o: _load(*o).nodes[node].parameters()  # noqa: E731
    assert params("console", "console.host:=::")["host"] == "::"          # YAML would read a mapping
    assert params("console", "console.host:=[::1]")["host"] == "[::1]"    # YAML would read a list
    assert params("console", "console.operator_name:=true")["operator_name"] == "true"
    assert params("camera", "camera.fps:=5")["fps"] == 5.0 and isinstance(params("camera", "camera.fps:=5")["fps"], float)
    assert params("camera", "camera.publish_raw:=False")["publish_raw"] is False
    assert params("safety_supervisor", "safety_supervisor.geofence:=[0, 0, 1, 0, 1, 1]")["geofence"] == [
        0.0, 0.0, 1.0, 0.0, 1.0, 1.0]
    zone = params("safety_supervisor", "safety_supervisor.keep_out.table:=[0.5, 0.5, 1.0, 0.5, 1.0, 1.0]")
    assert zone["keep_out.table"] == [0.5, 0.5, 1.0, 0.5, 1.0, 1.0]   # the supervisor's own prefix
    assert params("sim", "sim.use_sim_time:=true")["use_sim_time"] is True  # rclpy's own parameters


def test_param_files_and_inline_parameters_are_checked_too(tmp_path):
    (tmp_path / "cam.yaml").write_text(yaml.safe_dump({"/**": {"ros__parameters": {"fsp": 10.0}}}))
    cfg = tmp_path / "stack.yaml"
    cfg.write_text(yaml.safe_dump({"nodes": {"cam": {"executable": "camera_node", "param_files": [str(tmp_path / "cam.yaml")]}}}))
    with pytest.raises(StackConfigError, match=r"cam\.yaml: cam\.fsp: camera_node has no parameter 'fsp' .did you mean 'fps'"):
        load_stack(str(cfg))
    cfg.write_text(yaml.safe_dump({"nodes": {"cam": {"executable": "camera_node", "parameters": {"width": "wide"}}}}))
    with pytest.raises(StackConfigError, match=r"nodes\.cam\.parameters: cam\.width: expected an integer, got 'wide'"):
        load_stack(str(cfg))


def test_a_node_whose_executable_declares_nothing_is_refused(tmp_path):
    cfg = tmp_path / "stack.yaml"
    cfg.write_text(yaml.safe_dump({"nodes": {"x": {"executable": "mystery_node"}}}))
    with pytest.raises(StackConfigError, match="nodes.x: executable 'mystery_node' declares no parameters here: add it"):
        load_stack(str(cfg))
    with pytest.raises(ParameterError):
        schema_for("mystery_node")


def test_schema_refuses_defaults_of_no_ros_type():
    with pytest.raises(ParameterError, match="'bad'"):
        ParameterSchema("x", {"bad": {"a": 1}})
