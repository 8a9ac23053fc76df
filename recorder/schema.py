"""Message definitions as rosbag2 stores them in MCAP ("ros2msg" schema encoding).

The text of `pkg/msg/Type` is its .msg file, followed by every type it depends on, recursively, each
once, after a two-line delimiter ("=" * 80, then "MSG: pkg/Type"). The order is rosbag2's: depth first,
the dependencies of one definition in sorted order (rosbag2_cpp keeps them in a std::set). Writing the same
bytes as `ros2 bag record` keeps the files interchangeable; decoders (Foxglove, mcap_ros2) need only that the
text be complete.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

DELIMITER = "=" * 80 + "\n"
# a field line: "[pkg/]Type[N] name" (leading blanks allowed); comments, constants of primitive types and
# bounded strings ("string<=10") never name a message type
_FIELD_TYPE = re.compile(r"(?:^|\n)\s*([a-zA-Z0-9_/]+)(?:\[[^\]]*\])?\s+")
PRIMITIVE_TYPES = frozenset({"bool", "byte", "char", "float32", "float64", "int8", "uint8", "int16", "uint16",
                             "int32", "uint32", "int64", "uint64", "string", "wstring"})
_NAME = r"[a-zA-Z][a-zA-Z0-9_]*"
_TYPE_NAME = re.compile(rf"^({_NAME})/(?:({_NAME})/)?({_NAME})$")
MAX_DEPTH = 50   # nesting deeper than this is a cycle in the definitions


class DefinitionError(ValueError):
    """A message type whose definition cannot be found or read; the message names the type and where it looked."""


def share_dirs_from_env(env: dict | None = None) -> list[Path]:
    """<prefix>/share of every prefix on AMENT_PREFIX_PATH, in order (first wins, as in ament_index)."""
    value = (env if env is not None else os.environ).get("AMENT_PREFIX_PATH", "")
    return [Path(p) / "share" for p in value.split(os.pathsep) if p]


def split_type_name(type_name: str) -> tuple[str, str, str]:
    """'pkg/msg/Type' or 'pkg/Type' -> (pkg, 'msg', Type); DefinitionError for anything else."""
    m = _TYPE_NAME.match(type_name)
    if not m:
        raise DefinitionError(f"not a message type name: {type_name!r} (want pkg/msg/Type)")
    return m.group(1), m.group(2) or "msg", m.group(3)


def dependencies(text: str, package: str) -> list[str]:
    """Message types a .msg text uses, as 'pkg/Type', sorted; unqualified names belong to `package`."""
    found = set()
    for m in _FIELD_TYPE.finditer(text):
        name = m.group(1)
        if name in PRIMITIVE_TYPES:
            continue
        found.add(name if "/" in name else f"{package}/{name}")
    return sorted(found)


class DefinitionSource:
    """Reads .msg files from share/<pkg>/<ns>/<Type>.msg under the given share folders; caches texts."""

    def __init__(self, share_dirs: list[Path] | None = None):
        self.share_dirs = list(share_dirs) if share_dirs is not None else share_dirs_from_env()
        self._texts: dict[tuple[str, str, str], str] = {}

    def msg_text(self, type_name: str) -> str:
        key = split_type_name(type_name)
        if key not in self._texts:
            pkg, ns, name = key
            for share in self.share_dirs:
                path = share / pkg / ns / f"{name}.msg"
                if path.is_file():
                    self._texts[key] = path.read_text(encoding="utf-8")
                    break
            else:
                where = ", ".join(str(s) for s in self.share_dirs) or "(AMENT_PREFIX_PATH is empty)"
                raise DefinitionError(f"no .msg definition of {type_name} ({pkg}/{ns}/{name}.msg) under {where}")
        return self._texts[key]

    def full_text(self, type_name: str) -> str:
        """The complete ros2msg definition of `type_name` ('pkg/msg/Type'), dependencies appended."""
        seen: set[str] = set()

        def append(name: str, depth: int) -> str:
            if depth <= 0:
                raise DefinitionError(f"definition of {type_name} nests deeper than {MAX_DEPTH} (a cycle?)")
            text = self.msg_text(name)
            out = text
            for dep in dependencies(text, split_type_name(name)[0]):
                if dep not in seen:
                    seen.add(dep)
                    out += "\n" + DELIMITER + f"MSG: {dep}\n" + append(dep, depth - 1)
            return out

        return append(type_name, MAX_DEPTH)
