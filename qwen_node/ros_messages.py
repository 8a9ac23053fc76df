"""ROS messages <-> plain dicts, by the message's own field types (no rosidl_runtime_py here)."""
from __future__ import annotations

import math
from typing import Any


def message_to_dict(msg: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in msg.get_fields_and_field_types():
        out[name] = _value_to_plain(getattr(msg, name))
    return out


def _value_to_plain(v: Any) -> Any:
    if hasattr(v, "get_fields_and_field_types"):
        return message_to_dict(v)
    if isinstance(v, (list, tuple)) or type(v).__name__ == "ndarray" or type(v).__name__ == "array":
        return [_value_to_plain(x) for x in v]
    if isinstance(v, float):
        return v if math.isfinite(v) else str(v)
    if isinstance(v, (bytes, bytearray)):
        return list(v)
    return v.item() if hasattr(v, "item") else v


def fill_message(msg: Any, values: dict[str, Any]) -> Any:
    """Set fields of msg from values (already schema-checked); casts numbers to the field type."""
    types = msg.get_fields_and_field_types()
    for name, value in values.items():
        if name not in types:
            raise ValueError(f"{type(msg).__name__} has no field {name!r}")
        t = types[name]
        if t in ("double", "float"):
            value = float(value)
        elif t.startswith(("int", "uint")) or t in ("byte", "octet"):
            value = int(value)
        elif t == "boolean":
            value = bool(value)
        elif t.startswith("string"):
            value = str(value)
        setattr(msg, name, value)
    return msg
