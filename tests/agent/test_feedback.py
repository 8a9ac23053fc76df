"""DeltaCoalescer: the merge rules of the RunTask feedback (kind change, size, age, flush before others)."""
from __future__ import annotations

from qwen_stack.qwen_node.agent.feedback import DeltaCoalescer


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _make(**kw):
    sent, clock = [], Clock()
    return DeltaCoalescer(lambda k, t: sent.append((k, t)), clock=clock, **kw), sent, clock


def test_deltas_of_one_kind_merge_until_flushed():
    c, sent, _ = _make()
    for piece in ["I ", "see ", "the cube"]:
        c.add("thinking", piece)
    assert sent == []
    c.flush()
    c.flush()                                   # nothing pending: nothing sent
    assert sent == [("thinking", "I see the cube")]


def test_a_kind_change_sends_the_previous_kind_first():
    c, sent, _ = _make()
    c.add("thinking", "plan")
    c.add("text", "Going")
    c.add("text", " now")
    c.flush()
    assert sent == [("thinking", "plan"), ("text", "Going now")]


def test_size_and_age_bound_a_merged_message():
    c, sent, clock = _make(max_chars=10, max_age_s=0.25)
    c.add("text", "0123456789")            # exactly the limit: kept
    assert sent == []
    c.add("text", "X")                     # past it: sent, with the delta that crossed it
    assert sent == [("text", "0123456789X")]
    c.add("text", "a")
    clock.t = 0.2
    c.add("text", "b")
    assert len(sent) == 1
    clock.t = 0.3                          # the first pending delta is now 0.3 s old
    c.add("text", "c")
    assert sent[-1] == ("text", "abc")
    assert c.text == ""
