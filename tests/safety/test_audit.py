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


def _records(path) -> list[dict]:
    from qwen_stack.safety.audit import audit_files
    return [json.loads(line) for f in audit_files(path) for line in f.read_text().splitlines()]


def test_rotation_by_size_never_splits_or_loses_a_record(tmp_path):
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, max_bytes=600)
    for i in range(200):
        log.write("input", "autonomy", float(i), seq=i, pad="x" * (i % 50))
    log.close()
    from qwen_stack.safety.audit import audit_files
    files = audit_files(path)
    assert len(files) > 10 and files[-1] == path
    for f in files:                       # every file holds whole lines, each a record, none past the bound
        text = f.read_text()
        assert text.endswith("\n") and f.stat().st_size <= 600
        [json.loads(line) for line in text.splitlines()]
    assert [r["seq"] for r in _records(path)] == list(range(200))   # oldest first, nothing lost


def test_a_record_larger_than_the_bound_gets_a_file_of_its_own(tmp_path):
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, max_bytes=300)
    log.write("input", "a", 0.0, seq=0)
    log.write("input", "a", 1.0, seq=1, big="y" * 1000)
    log.write("input", "a", 2.0, seq=2)
    log.close()
    assert [r["seq"] for r in _records(path)] == [0, 1, 2]


def test_retention_deletes_oldest_rotated_files_never_the_current(tmp_path):
    path = tmp_path / "audit.jsonl"
    (tmp_path / "audit.notes.jsonl").write_text("not ours\n")      # a neighbour the rotation must not touch
    log = AuditLog(path, max_bytes=500, retention_bytes=1500)
    for i in range(300):
        log.write("input", "autonomy", float(i), seq=i)
    from qwen_stack.safety.audit import audit_files
    files = audit_files(path)
    rotated = files[:-1]
    assert sum(f.stat().st_size for f in rotated) <= 1500 and len(rotated) >= 2
    seqs = [r["seq"] for r in _records(path)]
    assert seqs == list(range(seqs[0], 300)) and seqs[0] > 0      # a contiguous tail: the newest kept
    log.write("input", "autonomy", 300.0, seq=300)                 # the current file is still written
    assert json.loads(path.read_text().splitlines()[-1])["seq"] == 300
    assert (tmp_path / "audit.notes.jsonl").read_text() == "not ours\n"
    log.close()


def test_reopening_appends_and_counts_the_existing_size(tmp_path):
    path = tmp_path / "audit.jsonl"
    AuditLog(path).write("input", "a", 0.0, pad="z" * 400)
    log = AuditLog(path, max_bytes=500)
    log.write("input", "a", 1.0, pad="z" * 400)                    # would pass 500 with the old content
    log.close()
    from qwen_stack.safety.audit import audit_files
    assert len(audit_files(path)) == 2
