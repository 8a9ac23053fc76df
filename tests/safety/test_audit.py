"""Audit log: one JSON record per line, readable while the writer is still open (flushed per record)."""
from __future__ import annotations

import json
import math

from qwen_stack.safety.audit import AuditLog


def test_records_are_flushed_and_valid_json(tmp_path):
    path = tmp_path / "sub" / "audit.jsonl"
    log = AuditLog(path)
    log.write("input", "autonomy", 1.5, linear_x=math.nan, angular_z=math.inf, extra=[1.0, -math.inf])
    log.write("verdict", "autonomy", 1.5, level="STOP", reasons=["non-finite input: linear_x=nan"])
    lines = path.read_text().splitlines()          # read before close: nothing is held in a buffer
    assert len(lines) == 2
    rec = json.loads(lines[0])
    assert rec["kind"] == "input" and rec["source"] == "autonomy" and rec["stamp"] == 1.5
    assert rec["linear_x"] == "nan" and rec["angular_z"] == "inf" and rec["extra"] == [1.0, "-inf"]
    assert "wall_time" in rec
    assert json.loads(lines[1])["reasons"] == ["non-finite input: linear_x=nan"]
    log.close()
    AuditLog(path).write("output", "supervisor", 2.0)      # appends
    assert len(path.read_text().splitlines()) == 3


def test_disabled_log_writes_nothing(tmp_path):
    AuditLog("").write("input", "x", 0.0)
    assert list(tmp_path.iterdir()) == []
