"""Audit log: one JSON object per line, flushed per record so that it survives a crash of the process
(and, with fsync=True, a power loss). Every input, verdict and output goes through `write`.

Rotation: when the next record would take the file past `max_bytes`, the file is closed and renamed
`<stem>.<UTC time>.<n><suffix>` beside it (one rename, atomic) and a new file is started, so a record is
never split and never lost. Rotated files beyond `retention_bytes` in all are deleted, oldest first; the
current file never is. `audit_files(path)` lists a log's files oldest first (what a reader should read).
"""
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


def audit_files(path: str | os.PathLike) -> list[Path]:
    """The rotated files of the log at `path`, oldest first, then the current file (if it exists)."""
    path = Path(os.path.expanduser(str(path)))
    rotated = [(key, p) for p in path.parent.glob(f"{path.stem}.*{path.suffix}")
               if (key := _rotation_key(path, p)) is not None]
    return [p for _, p in sorted(rotated)] + ([path] if path.exists() else [])


def _rotation_key(current: Path, p: Path) -> tuple[str, int] | None:
    """(time, n) of a file rotated from `current` (<stem>.<YYYYmmddTHHMMSSZ>.<n><suffix>); None for other files."""
    name = p.name
    if not (name.startswith(current.stem + ".") and name.endswith(current.suffix)) or p == current:
        return None
    middle = name[len(current.stem) + 1:len(name) - len(current.suffix)]
    stamp, _, n = middle.partition(".")
    if len(stamp) != 16 or not stamp.endswith("Z") or not n.isdigit():
        return None
    return stamp, int(n)


class AuditLog:
    def __init__(self, path: str | os.PathLike | None, fsync: bool = False, max_bytes: int = 0,
                 retention_bytes: int = 0) -> None:
        """max_bytes: rotate before the file would exceed it (0: never). retention_bytes: rotated files kept
        in all, oldest deleted first (0: keep every rotated file)."""
        self.path = Path(os.path.expanduser(str(path))) if path else None
        self.fsync, self.max_bytes, self.retention_bytes = fsync, int(max_bytes), int(retention_bytes)
        self._lock = threading.Lock()      # the node writes from several callback threads
        self._file = None
        self._size = 0
        self._seq = 0                      # tells apart files rotated within the same second
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._open()

    def _open(self) -> None:
        self._file = open(self.path, "a", encoding="utf-8", buffering=1)
        self._size = self._file.tell()

    def _rotate(self) -> None:
        self._file.close()
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        while True:
            self._seq += 1
            target = self.path.with_name(f"{self.path.stem}.{stamp}.{self._seq}{self.path.suffix}")
            if not target.exists():
                break
        os.replace(self.path, target)
        self._open()
        if self.retention_bytes > 0:
            rotated = audit_files(self.path)[:-1]
            total = sum(p.stat().st_size for p in rotated)
            for old in rotated:               # oldest first; the current file is not in the list
                if total <= self.retention_bytes:
                    break
                total -= old.stat().st_size
                old.unlink(missing_ok=True)

    def write(self, kind: str, source: str, stamp: float, **fields) -> None:
        """Append one record: wall-clock time, the caller's clock `stamp`, kind, source and fields."""
        if self._file is None:
            return
        record = {"wall_time": time.time(), "stamp": stamp, "kind": kind, "source": _clean(source), **_clean(fields)}
        line = json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n"
        size = len(line.encode("utf-8"))
        with self._lock:
            if self.max_bytes > 0 and self._size > 0 and self._size + size > self.max_bytes:
                self._rotate()
            self._file.write(line)
            self._file.flush()
            self._size += size
            if self.fsync:
                os.fsync(self._file.fileno())

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
