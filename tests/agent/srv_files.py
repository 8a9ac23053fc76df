"""Request fields read from the .srv files in ros_ws/src (for tests that run before ros_ws is built)."""
from __future__ import annotations

from qwen_stack.paths import SOURCE_ROOT

_IDL = {"float64": "double", "float32": "float", "bool": "boolean"}


def srv_file_request_fields(interface: str) -> dict[str, str]:
    pkg, kind, name = interface.split("/")
    path = SOURCE_ROOT / "ros_ws" / "src" / pkg / kind / f"{name}.srv"
    fields: dict[str, str] = {}
    for line in path.read_text().split("---")[0].splitlines():
        line = line.split("#")[0].strip()
        if line and "=" not in line:
            typ, fname = line.split()[:2]
            fields[fname] = _IDL.get(typ, typ)
    return fields
