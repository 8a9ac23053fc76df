"""Audit log: one JSON object per line, flushed per record so that it survives a crash of the process
(and, with fsync=True, a power loss). Every input, verdict and output goes through `write`."""
from __future__ import annotations

import json
import math
import os
import threading
import time
from pathlib import Path

from qwen_stack.safety.verdict import bounded, num


# bounds of one record's fields: whatever a caller sends (a reset reason, tool arguments, a service name)
# is cut, with a note of how much, so that a record stays a line of a few KB
MAX_STRING_CHARS = 2000
MAX_ITEMS = 64
MAX_DEPTH = 8


def _clean(value, depth: int = 0):
    """JSON without NaN/inf tokens (they are not JSON): non-finite floats become strings; strings, lists,
    mappings, nesting and integers bounded (a 5,000-digit integer is a size, not its digits)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2 ** 63:
        return num(value)
    if isinstance(value, str):
        return bounded(value, MAX_STRING_CHARS)
    if depth >= MAX_DEPTH and isinstance(value, (dict, list, tuple)):
        return "[nested too deeply]"
    if isinstance(value, dict):
        out = {bounded(str(k), 200): _clean(v, depth + 1) for k, v in list(value.items())[:MAX_ITEMS]}
        if len(value) > MAX_ITEMS:
            out["..."] = f"{len(value) - MAX_ITEMS} more entries"
        return out
    if isinstance(value, (list, tuple)):
        out = [_clean(v, depth + 1) for v in value[:MAX_ITEMS]]
        if len(value) > MAX_ITEMS:
            out.append(f"... {len(value) - MAX_ITEMS} more items")
        return out
    return value


class AuditLog:
    def __init__(self, path: str | os.PathLike | None, fsync: bool = False) -> None:
        self.path = Path(os.path.expanduser(str(path))) if path else None
        self.fsync = fsync
        self._lock = threading.Lock()      # the node writes from several callback threads
        self._file = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8", buffering=1)

    def write(self, kind: str, source: str, stamp: float, **fields) -> None:
        """Append one record: wall-clock time, the caller's clock `stamp`, kind, source and fields."""
        if self._file is None:
            return
        record = {"wall_time": time.time(), "stamp": stamp, "kind": kind, "source": _clean(source), **_clean(fields)}
        line = json.dumps(record, separators=(",", ":"), allow_nan=False)
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()
            if self.fsync:
                os.fsync(self._file.fileno())

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
