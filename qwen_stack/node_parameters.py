"""A node's ROS parameters from its settings dataclass: declared with the dataclass defaults, read back as
plain values, built into the settings. One way for every node, and the same list of names and defaults
the launchers check a stack against (qwen_stack/parameter_schema.py), so the two cannot drift apart.

A field whose metadata is NOT_A_PARAMETER is no parameter (a value the node fills in itself, a table
given in code); every other field is one, named as the field, typed by its default.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, TypeVar

NOT_A_PARAMETER = {"ros_parameter": False}   # dataclasses.field(metadata=NOT_A_PARAMETER)

S = TypeVar("S")


def parameter_defaults(settings: type) -> dict[str, Any]:
    """name -> default of every field of the settings dataclass that is a ROS parameter (tuples as lists)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(settings):
        if not f.metadata.get("ros_parameter", True):
            continue
        if f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        elif f.default is not dataclasses.MISSING:
            default = f.default
        else:
            raise TypeError(f"{settings.__name__}.{f.name} has no default: a ROS parameter is typed by its default")
        out[f.name] = list(default) if isinstance(default, tuple) else default
    return out


def plain(value: Any) -> Any:
    """A parameter value as plain Python: rclpy hands arrays out as array.array or tuples; lists here."""
    if hasattr(value, "tolist"):
        return value.tolist()
    return list(value) if isinstance(value, tuple) else value


def declare_parameters(node, defaults: Mapping[str, Any]) -> dict[str, Any]:
    """Declare each parameter on `node` with its default; name -> the value the node was started with."""
    return {name: plain(node.declare_parameter(name, default).value) for name, default in defaults.items()}


def settings_from_node(node, settings: type[S], build: Callable[[dict[str, Any]], S] | None = None) -> S:
    """Declare the settings' parameters on `node` and build the settings from the values given.

    build(values) defaults to settings.from_dict (which refuses unknown names) when it has one, else
    settings(**values); the settings' own checks raise the error that names a bad parameter."""
    values = declare_parameters(node, parameter_defaults(settings))
    if build is None:
        build = getattr(settings, "from_dict", None) or (lambda v: settings(**v))
    return build(values)
