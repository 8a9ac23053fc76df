"""Which ROS parameters each node of the stack declares, and their types: one check for every node.

rclpy ignores a parameter a node never declares (a typo such as `console.prot:=9000` starts the
node on its default) and raises a traceback for a value of the wrong type. So the stack checks
every parameter before any node starts, from the same settings each node declares its
parameters from: `PARAMETER_SCHEMAS` maps each executable to its settings dataclass (every field
but those marked NOT_A_PARAMETER is a parameter, typed by its default: node_parameters.py, the same
helper the nodes declare with) or to a function returning
{name: default}. Both launchers go through here (stack_config.load_stack), and a node whose
executable has no entry is refused, so a node added later cannot skip the check.

Values typed on a command line (`node.param:=text`) are read by the parameter's declared type:
text for a string parameter is kept as is (`console.host:=::` is the string "::").
"""
from __future__ import annotations

import dataclasses
import difflib
import importlib
import re
from dataclasses import dataclass
from typing import Any

import yaml

from qwen_stack.node_parameters import parameter_defaults

# executable -> "module:attribute" (a settings dataclass or a function returning {name: default}),
# optionally with name prefixes under which the node takes parameters of its own choosing.
PARAMETER_SCHEMAS: dict[str, tuple[str, tuple[str, ...]]] = {
    "camera_node": ("qwen_stack.camera.config:CameraConfig", ()),
    "sim_node": ("qwen_stack.sim.config:SimNodeConfig", ()),
    "skills_node": ("qwen_stack.sim.config:SkillsNodeConfig", ()),
    # keep_out.<zone>: one polygon per name listed in keep_out_zones (the supervisor checks them)
    "safety_supervisor": ("qwen_stack.safety.config:ros_parameter_defaults", ("keep_out.",)),
    "qwen_node": ("qwen_stack.qwen_node.agent.config:AgentSettings", ()),
    "console_node": ("qwen_stack.console.config:ConsoleSettings", ()),
    "perception_node": ("qwen_stack.perception.config:parameter_defaults", ()),
    "recorder_node": ("qwen_stack.recorder.config:RecorderConfig", ()),
}

# Parameters rclpy itself declares on every node.
ROS_OWN_PARAMETERS: dict[str, Any] = {"use_sim_time": False, "start_type_description_service": True}
ROS_OWN_PREFIXES = ("qos_overrides.",)

_SCALARS = (bool, int, float, str)
_INT = re.compile(r"^[+-]?[0-9]+$")


class ParameterError(ValueError):
    """A parameter a node does not declare, or a value of the wrong type; the message names it."""


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "a list" + (f" of {_kind(value[0]).split(' ', 1)[-1]}s" if value else "")
    return type(value).__name__


@dataclass(frozen=True)
class ParameterSchema:
    """The parameters one executable declares: name -> default (its type is the parameter's type)."""

    executable: str
    defaults: dict[str, Any]
    prefixes: tuple[str, ...] = ()  # names under these prefixes: any ROS parameter value, the node checks it

    def __post_init__(self) -> None:
        for name, default in self.defaults.items():
            ok = isinstance(default, _SCALARS) or (
                isinstance(default, (list, tuple)) and all(isinstance(v, _SCALARS) for v in default))
            if not ok:
                raise ParameterError(f"{self.executable}: parameter {name!r} has a default of no ROS type: {default!r}")

    def default_of(self, name: str) -> tuple[bool, Any]:
        """(declared, default); default None where any ROS parameter value is accepted."""
        if name in self.defaults:
            return True, self.defaults[name]
        if name in ROS_OWN_PARAMETERS:
            return True, ROS_OWN_PARAMETERS[name]
        if any(name.startswith(p) and len(name) > len(p) for p in self.prefixes + ROS_OWN_PREFIXES):
            return True, None
        return False, None

    def _unknown(self, where: str, name: str) -> ParameterError:
        from qwen_stack.robot import FORMER_COPIES, RobotSpec

        close = difflib.get_close_matches(name, list(self.defaults), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        robot_key = FORMER_COPIES.get(name) or (name if name in RobotSpec.__dataclass_fields__ else None)
        if robot_key:   # a robot fact: one place for it, whatever the node
            hint = f" (a robot fact: {robot_key} in the robot description, config/robot.yaml)"
        return ParameterError(f"{where}{name}: {self.executable} has no parameter {name!r}{hint}")

    def check(self, name: str, value: Any, where: str = "") -> Any:
        """`value` as the node will receive it (an integer where a number is declared becomes a float)."""
        declared, default = self.default_of(name)
        if not declared:
            raise self._unknown(where, name)
        return _typed(value, default, f"{where}{name}")

    def parse(self, name: str, text: str, where: str = "") -> Any:
        """A value typed on a command line, read by the parameter's declared type."""
        declared, default = self.default_of(name)
        if not declared:
            raise self._unknown(where, name)
        label = f"{where}{name}"
        if isinstance(default, str):
            return str(text)
        if isinstance(default, bool):
            if text.lower() in ("true", "false"):
                return text.lower() == "true"
            raise ParameterError(f"{label}:={text}: expected true or false")
        if isinstance(default, int):
            if _INT.match(text.strip()):
                return int(text)
            raise ParameterError(f"{label}:={text}: expected an integer")
        if isinstance(default, float):
            try:
                return float(text)
            except ValueError:
                raise ParameterError(f"{label}:={text}: expected a number") from None
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            raise ParameterError(f"{label}:={text}: not a value (write lists as [a, b])") from None
        return _typed(value, default, label)


def _typed(value: Any, default: Any, label: str) -> Any:
    """Check `value` against the type of `default` (None: any ROS parameter value)."""
    def bad(want: str) -> ParameterError:
        return ParameterError(f"{label}: expected {want}, got {value!r}")

    if default is None:
        if isinstance(value, _SCALARS):
            return value
        if isinstance(value, (list, tuple)) and value:
            return _typed_list(list(value), [value[0]], label)
        raise bad("a ROS parameter value (true/false, a number, a string or a non-empty list of one type)")
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        raise bad("true or false")
    if isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise bad("an integer")
    if isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise bad("a number")
    if isinstance(default, str):
        if isinstance(value, str):
            return value
        raise bad("a string (quote it in YAML)")
    if not isinstance(value, (list, tuple)):
        raise bad(_kind(default))
    return _typed_list(list(value), list(default), label)


def _typed_list(value: list, default: list, label: str) -> list:
    if not default:  # no element type declared: one ROS type for every element
        default = value[:1]
    if not value:
        return value
    return [_typed(v, default[0], f"{label}[{i}]") for i, v in enumerate(value)]


def _defaults_of(target: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(target):
        return parameter_defaults(target)   # what the node declares (qwen_stack/node_parameters.py)
    return dict(target())


def schema_for(executable: str) -> ParameterSchema:
    """The declared parameters of `executable`; ParameterError when it has no entry."""
    if executable not in PARAMETER_SCHEMAS:
        raise ParameterError(
            f"executable {executable!r} declares no parameters here: add it to PARAMETER_SCHEMAS in "
            f"{__name__.replace('.', '/')}.py (the settings it declares its ROS parameters from)")
    target, prefixes = PARAMETER_SCHEMAS[executable]
    module, attr = target.split(":")
    return ParameterSchema(executable, _defaults_of(getattr(importlib.import_module(module), attr)), prefixes)
