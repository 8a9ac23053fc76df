"""ROS messages <-> the core's dataclasses, and JSON <-> service requests/responses through rosidl
type introspection (get_fields_and_field_types). Imports ROS packages lazily."""
from __future__ import annotations

import importlib
import math

import numpy as np

from qwen_stack.safety.inputs import LaserScanData, OdometryData, VelocityCommand

_FLOAT_TYPES = {"double", "float"}
_INT_TYPES = {"int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64", "octet", "char", "byte"}


def twist_to_command(msg, source: str, stamp: float) -> VelocityCommand:
    return VelocityCommand(msg.linear.x, msg.angular.z, source, stamp, msg.linear.y, msg.linear.z,
                           msg.angular.x, msg.angular.y)


def scan_to_data(msg, stamp: float) -> LaserScanData:
    return LaserScanData(msg.angle_min, msg.angle_increment, msg.range_min, msg.range_max,
                         np.asarray(msg.ranges, dtype=np.float64), stamp)


def odom_to_data(msg, stamp: float) -> OdometryData:
    p, q = msg.pose.pose.position, msg.pose.pose.orientation
    yaw = math.atan2(2.0 * (q.w * q.z + q.x * q.y), 1.0 - 2.0 * (q.y * q.y + q.z * q.z))
    t = msg.twist.twist
    return OdometryData(p.x, p.y, yaw, t.linear.x, t.angular.z, stamp)


def service_class(type_name: str):
    """'pkg/srv/Name' -> the generated service class, or None when it cannot be imported."""
    try:
        pkg, kind, name = type_name.split("/")
        return getattr(importlib.import_module(f"{pkg}.{kind}"), name)
    except (ValueError, ImportError, AttributeError):
        return None


def request_fields(type_name: str) -> list[str] | None:
    cls = service_class(type_name)
    return None if cls is None else list(cls.Request.get_fields_and_field_types())


def fill_message(msg, values: dict):
    """Set fields of `msg` from a dict (already vetted by the policy); numbers are coerced to the field type."""
    types = msg.get_fields_and_field_types()
    for name, value in values.items():
        ftype = types[name]
        if ftype in _FLOAT_TYPES:
            value = float(value)
        elif ftype in _INT_TYPES:
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


def message_to_dict(msg):
    """A generated message -> plain JSON-able dict (nested messages and arrays included)."""
    if hasattr(msg, "get_fields_and_field_types"):
        return {k: message_to_dict(getattr(msg, k)) for k in msg.get_fields_and_field_types()}
    if isinstance(msg, (list, tuple)) or hasattr(msg, "tolist"):
        return [message_to_dict(v) for v in (msg.tolist() if hasattr(msg, "tolist") else msg)]
    if isinstance(msg, float) and not math.isfinite(msg):
        return str(msg)
    return msg
