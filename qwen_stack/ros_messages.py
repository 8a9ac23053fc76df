"""ROS messages <-> plain dicts, and service type names -> generated classes, by rosidl introspection
(get_fields_and_field_types; no rosidl_runtime_py). One place for the planner's direct calls and the
supervisor's tool proxy. Generated packages are imported lazily, by name."""
from __future__ import annotations

import importlib
import math
from typing import Any

FLOAT_TYPES = frozenset({"double", "float", "float32", "float64"})   # introspection says double/float
INT_TYPES = frozenset({"int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64", "octet", "char",
                       "byte"})


class InterfaceUnavailable(ValueError):
    """A 'pkg/srv/Name' that is malformed or cannot be imported."""


def service_class(type_name: str):
    """'pkg/srv/Name' -> the generated service class; InterfaceUnavailable says why not."""
    parts = type_name.split("/")
    if len(parts) != 3 or parts[1] != "srv" or not all(parts):
        raise InterfaceUnavailable(f"interface {type_name!r} is not of the form pkg/srv/Name")
    try:
        return getattr(importlib.import_module(f"{parts[0]}.srv"), parts[2])
    except (ImportError, AttributeError) as exc:
        raise InterfaceUnavailable(f"interface {type_name!r} cannot be imported ({exc}); is ros_ws built?") from None


def fill_message(msg: Any, values: dict[str, Any]) -> Any:
    """Set fields of `msg` from a dict (already schema-checked); numbers are cast to the field's type,
    nested dicts fill nested messages. An unknown field raises ValueError."""
    types = msg.get_fields_and_field_types()
    for name, value in values.items():
        if name not in types:
            raise ValueError(f"{type(msg).__name__} has no field {name!r}")
        ftype = types[name]
        if ftype in FLOAT_TYPES:
            value = float(value)
        elif ftype in INT_TYPES:
            value = int(value)
        elif ftype == "boolean":
            value = bool(value)
        elif ftype.startswith("string"):
            value = str(value)
        elif isinstance(value, dict):
            fill_message(getattr(msg, name), value)
            continue
        setattr(msg, name, value)
    return msg


def message_to_dict(msg: Any) -> Any:
    """A generated message -> a JSON-able dict (nested messages and arrays included; NaN and inf as strings,
    bytes as lists of ints)."""
    if hasattr(msg, "get_fields_and_field_types"):
        return {k: message_to_dict(getattr(msg, k)) for k in msg.get_fields_and_field_types()}
    if isinstance(msg, (bytes, bytearray)):
        return list(msg)
    if hasattr(msg, "tolist"):          # numpy arrays and scalars, array.array
        msg = msg.tolist()
    if isinstance(msg, (list, tuple)):
        return [message_to_dict(v) for v in msg]
    if isinstance(msg, float) and not math.isfinite(msg):
        return str(msg)
    return msg
