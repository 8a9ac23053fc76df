"""How the stack is started: one YAML (config/stack.yaml) read by both launchers.

`launch/bringup.launch.py` (launch_ros, full ROS installs) and `qwen-stack launch` (the
pip-world launcher, since no launch/launch_ros wheels exist) both call `load_stack()` and
`NodeSpec.parameters()`, so the two start the same nodes with the same parameters.

File layout (every key is documented in config/stack.yaml itself):
    namespace: ""             # robot namespace for every node
    robot: robot.yaml         # the robot description, given to every node that reads it as robot_file
    profiles: {name: [node, ...]}
    nodes:
      <name>:
        executable: camera_node     # console script of package `qwen_stack`
        required: true              # its death stops the stack (non-zero exit)
        param_files: [safety.yaml]  # ROS parameter files in config/
        parameters: {...}           # inline parameters, override param_files
        remappings: {from: to}

Every parameter (param files, inline, command line) is checked against what the node's executable
declares (qwen_stack/parameter_schema.py) before any node starts: an unknown name or a value of the
wrong type is a StackConfigError naming `node.parameter`.

One robot per stack: the top-level `robot` is loaded (and refused, naming the key, when it cannot be
used) and passed as `robot_file` to every node that declares that parameter; a node's own robot_file
(param file, inline, command line) is refused, so two nodes can never read different robots.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from qwen_stack.parameter_schema import ParameterError, ParameterSchema, schema_for
from qwen_stack.paths import config_file
from qwen_stack.robot import ROBOT_FILE, RobotConfigError, load_robot, robot_path

PACKAGE = "qwen_stack"
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_NAMESPACE = re.compile(r"^(/?[A-Za-z][A-Za-z0-9_]*)*/?$")
_PARAM_TYPES = (bool, int, float, str)
ROBOT_PARAMETER = "robot_file"   # every node that reads the robot description takes it under this name


class StackConfigError(ValueError):
    """A stack configuration that cannot be started; the message names the offending key."""


class CommandLineValue(str):
    """A parameter value as typed after `:=`; read by the parameter's declared type (stack_config.load_stack)."""


@dataclass(frozen=True)
class NodeSpec:
    name: str
    executable: str
    namespace: str = ""
    package: str = PACKAGE
    required: bool = True
    param_files: tuple[Path, ...] = ()
    inline_parameters: dict[str, Any] = field(default_factory=dict)
    remappings: tuple[tuple[str, str], ...] = ()
    schema: ParameterSchema | None = field(default=None, compare=False, repr=False)  # what the node declares

    def parameters(self) -> dict[str, Any]:
        """Merged ROS parameters: param_files in order (sections for this node or `/**`), then inline ones,
        each checked against the node's declared parameters."""
        merged: dict[str, Any] = {}
        for path in self.param_files:
            for name, value in read_ros_params_file(path, self.name).items():
                merged[name] = self._checked(name, value, f"{path}: {self.name}.")
        merged.update(self.inline_parameters)  # checked by load_stack
        return merged

    def _checked(self, name: str, value: Any, where: str) -> Any:
        if self.schema is None:
            return value
        try:
            return self.schema.check(name, value, where)
        except ParameterError as exc:
            raise StackConfigError(str(exc)) from None

    @property
    def fully_qualified_name(self) -> str:
        ns = self.namespace.strip("/")
        return f"/{ns}/{self.name}" if ns else f"/{self.name}"


def _matches_node(key: str, node_name: str) -> bool:
    key = key.strip()
    if key in ("/**", "**"):
        return True
    return key.rstrip("/").split("/")[-1] == node_name


def _flatten(prefix: str, value: Any, out: dict[str, Any], where: str) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out, where)
        return
    ok = isinstance(value, _PARAM_TYPES) or (
        isinstance(value, list) and all(isinstance(v, _PARAM_TYPES) for v in value))
    if not ok:
        raise StackConfigError(f"{where}: parameter {prefix!r} has unsupported value {value!r}")
    out[prefix] = value


def read_ros_params_file(path: Path, node_name: str) -> dict[str, Any]:
    """Parameters for `node_name` from a ROS 2 parameter file (flattened with dots, as ROS does)."""
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise StackConfigError(f"cannot read parameter file {path}: {exc}") from exc
    out: dict[str, Any] = {}
    for key, section in data.items():
        if not isinstance(section, dict) or "ros__parameters" not in section:
            raise StackConfigError(f"{path}: section {key!r} has no 'ros__parameters'")
        if _matches_node(str(key), node_name):
            _flatten("", section["ros__parameters"] or {}, out, str(path))
    return out


@dataclass(frozen=True)
class StackConfig:
    namespace: str
    nodes: dict[str, NodeSpec]
    profiles: dict[str, tuple[str, ...]]
    source: Path
    robot_file: Path | None = None   # the robot description every node that reads one is given

    def select(self, profile: str | None) -> list[NodeSpec]:
        if profile is None:
            return list(self.nodes.values())
        if profile not in self.profiles:
            raise StackConfigError(
                f"unknown profile {profile!r}; {self.source} defines: {', '.join(sorted(self.profiles))}")
        return [self.nodes[n] for n in self.profiles[profile]]


def _expect(cond: bool, msg: str) -> None:
    if not cond:
        raise StackConfigError(msg)


def load_stack(path: str | Path = "stack.yaml", namespace: str | None = None,
               overrides: dict[str, dict[str, Any]] | None = None) -> StackConfig:
    """Load and validate a stack file. `namespace` overrides the file's; `overrides` maps
    node name -> parameters that replace the file's (for the command line)."""
    path = config_file(str(path))
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise StackConfigError(f"cannot read stack file {path}: {exc}") from exc
    _expect(isinstance(data, dict), f"{path}: expected a mapping at the top level")
    ns = data.get("namespace", "") if namespace is None else namespace
    _expect(isinstance(ns, str) and bool(_NAMESPACE.match(ns)),
            f"{path}: namespace {ns!r} is not a valid ROS namespace")
    raw_nodes = data.get("nodes")
    _expect(isinstance(raw_nodes, dict) and raw_nodes, f"{path}: 'nodes' must be a non-empty mapping")
    overrides = overrides or {}
    for name in overrides:
        _expect(name in raw_nodes, f"override for unknown node {name!r}")
    robot = data.get("robot", ROBOT_FILE)
    _expect(isinstance(robot, str) and robot.strip() != "",
            f"{path}: robot must name the robot description (a config/ name or a path)")
    robot_file = robot_path(robot).resolve()
    try:
        load_robot(str(robot_file))
    except RobotConfigError as exc:
        raise StackConfigError(f"{path}: robot: {exc}") from None

    nodes: dict[str, NodeSpec] = {}
    for name, entry in raw_nodes.items():
        where = f"{path}: nodes.{name}"
        _expect(bool(_NAME.match(str(name))), f"{where}: node name must match {_NAME.pattern}")
        _expect(isinstance(entry, dict), f"{where}: expected a mapping")
        unknown = set(entry) - {"executable", "package", "required", "param_files", "parameters", "remappings"}
        _expect(not unknown, f"{where}: unknown keys {sorted(unknown)}")
        exe = entry.get("executable")
        _expect(isinstance(exe, str) and exe != "", f"{where}.executable is required")
        required = entry.get("required", True)
        _expect(isinstance(required, bool), f"{where}.required must be true or false")
        files = []
        for f in entry.get("param_files", []) or []:
            p = config_file(str(f)) if not Path(str(f)).is_absolute() else Path(str(f))
            _expect(p.is_file(), f"{where}.param_files: {f} not found")
            files.append(p)
        try:
            schema = schema_for(exe)
        except ParameterError as exc:
            raise StackConfigError(f"{where}: {exc}") from None
        inline: dict[str, Any] = {}
        _flatten("", entry.get("parameters") or {}, inline, where + ".parameters")
        try:
            inline = {k: schema.check(k, v, f"{where}.parameters: {name}.") for k, v in inline.items()}
            for k, v in overrides.get(name, {}).items():
                inline[k] = (schema.parse(k, v, f"{name}.") if isinstance(v, CommandLineValue)
                             else schema.check(k, v, f"{name}."))
        except ParameterError as exc:
            raise StackConfigError(str(exc)) from None
        if ROBOT_PARAMETER in schema.defaults:
            given = [where + ".parameters"] if ROBOT_PARAMETER in (entry.get("parameters") or {}) else []
            given += [str(p) for p in files if ROBOT_PARAMETER in read_ros_params_file(p, name)]
            given += ["the command line"] if ROBOT_PARAMETER in overrides.get(name, {}) else []
            _expect(not given, f"{name}.{ROBOT_PARAMETER} is the stack's, not one node's (given in "
                               f"{', '.join(given)}): set `robot:` at the top of {path}, once for every node")
            inline[ROBOT_PARAMETER] = str(robot_file)
        remaps = entry.get("remappings") or {}
        _expect(isinstance(remaps, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in remaps.items()),
                f"{where}.remappings must map topic names to topic names")
        nodes[name] = NodeSpec(name=name, executable=exe, namespace=ns, package=entry.get("package", PACKAGE),
                               required=required, param_files=tuple(files), inline_parameters=inline,
                               remappings=tuple(remaps.items()), schema=schema)
        nodes[name].parameters()  # validate parameter files now, not at launch

    profiles: dict[str, tuple[str, ...]] = {}
    for pname, members in (data.get("profiles") or {}).items():
        _expect(isinstance(members, list) and members, f"{path}: profiles.{pname} must be a non-empty list")
        for m in members:
            _expect(m in nodes, f"{path}: profiles.{pname} names unknown node {m!r}")
        profiles[pname] = tuple(members)
    return StackConfig(namespace=ns, nodes=nodes, profiles=profiles, source=Path(path), robot_file=robot_file)


def launch_ros_node_kwargs(spec: NodeSpec) -> dict[str, Any]:
    """Keyword arguments for `launch_ros.actions.Node` that start `spec` (used by bringup.launch.py)."""
    return {
        "package": spec.package,
        "executable": spec.executable,
        "name": spec.name,
        "namespace": spec.namespace.strip("/") and "/" + spec.namespace.strip("/"),
        "parameters": [spec.parameters()],
        "remappings": list(spec.remappings),
        "output": "screen",
    }
