"""Audit log: one JSON object per line, flushed per record so that it survives a crash of the process
(and, with fsync=True, a power loss). Every input, verdict and output goes through `write`."""
from __future__ import annotations

import json
import math
import os
import threading
import time
from pathlib import Path


def _clean(value):
    """JSON without NaN/inf tokens (they are not JSON): non-finite floats become strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
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
        record = {"wall_time": time.time(), "stamp": stamp, "kind": kind, "source": source, **_clean(fields)}
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
