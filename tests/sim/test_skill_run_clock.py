"""The skills' motion loop (SkillsNode._run) when the clock jumps back mid-skill (sim reset, clock stepped):
the skill stops at once with a reason instead of waiting for a deadline that lies in the old time; its
deadline is in sim time, and grows by the time the base was held below half the command.

The loop runs on a test double of the node's state (odometry feed, command sink, lock): no ROS graph."""
from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest

pytest.importorskip("rclpy")
from qwen_stack.sim.config import SkillsNodeConfig  # noqa: E402
from qwen_stack.sim.skill_control import Pose2D, SkillLimits, Twist2D  # noqa: E402
from qwen_stack.sim.skill_run import SLOWED_CAP  # noqa: E402
from qwen_stack.sim.skills_node import SkillsNode  # noqa: E402


class NeverDone:
    done = False

    def update(self, pose, velocity, stamp=None):
        return Twist2D(0.2, 0.0)


def _double(stamps: list[float], speed: float = 0.0):
    """The node's state as _run reads it: odometry messages at the given sim times (the base moving at
    `speed`), commands recorded."""
    feed = iter(stamps)
    sent: list[Twist2D] = []

    def next_odom(after_seq):
        t = next(feed, None)
        return None if t is None else (after_seq + 1, Pose2D(0.0, 0.0, 0.0), Twist2D(speed, 0.0), t)
    return SimpleNamespace(motion_lock=threading.Lock(), stopping=threading.Event(), estop_latched=False, odom_seq=0,
                           _send=sent.append, limits=SkillLimits(max_linear=0.5, max_angular=1.0),
                           _next_odom=next_odom, config=SkillsNodeConfig()), sent


def test_backward_jump_stops_the_skill_with_a_reason():
    node, sent = _double([100.0, 100.1, 100.2, 0.05, 0.1, 0.2])
    ok, msg, _ = SkillsNode._run(node, lambda pose: (NeverDone(), None), expected_s=5.0)
    assert not ok and "clock jumped back" in msg
    assert sent[-1] == Twist2D(0.0, 0.0) and len(sent) == 5   # zero, a tick per message before the jump, stop
    assert not node.motion_lock.locked()


def test_a_stopping_process_ends_the_skill_with_a_zero_command():
    node, sent = _double([10.0 + 0.05 * i for i in range(200)])
    real_next = node._next_odom

    def next_odom(after_seq):      # the process is asked to stop after the third odometry message
        if after_seq == 3:
            node.stopping.set()
        return real_next(after_seq)
    node._next_odom = next_odom
    ok, msg, _ = SkillsNode._run(node, lambda pose: (NeverDone(), None), expected_s=5.0)
    assert not ok and "stopping" in msg
    assert sent[-1] == Twist2D(0.0, 0.0) and not node.motion_lock.locked()


def test_forward_time_still_times_out_in_sim_time():
    margin = SkillsNodeConfig().skill_timeout_margin
    node, _ = _double([10.0 + 0.5 * i for i in range(200)], speed=0.2)     # the base does what it is told
    ok, msg, _ = SkillsNode._run(node, lambda pose: (NeverDone(), None), expected_s=1.0)
    assert not ok and "timed out after" in msg and float(msg.split("after ")[1].split(" s")[0]) <= 1.0 + margin + 0.5


@pytest.mark.parametrize("expected_s, slowed_back", [(1.0, SLOWED_CAP * 1.0), (20.0, None)])
def test_time_the_base_was_slowed_is_added_to_the_deadline(expected_s, slowed_back):
    """The supervisor's slowdown zone holds the base at 0.3 of the command (0.06 of 0.2 m/s): that time is
    given back to the skill, up to SLOWED_CAP expected durations; the message says how much there was."""
    margin = SkillsNodeConfig().skill_timeout_margin
    node, _ = _double([10.0 + 0.5 * i for i in range(400)], speed=0.06)
    ok, msg, _ = SkillsNode._run(node, lambda pose: (NeverDone(), None), expected_s=expected_s)
    took = float(msg.split("after ")[1].split(" s")[0])
    assert not ok and "below half the commanded speed" in msg
    if slowed_back is not None:                  # capped: expected + margin + cap
        assert expected_s + margin + slowed_back <= took <= expected_s + margin + slowed_back + 0.5
    else:                                        # all of it slowed: the deadline runs away with it until the cap
        assert took == pytest.approx(expected_s + margin + SLOWED_CAP * expected_s, abs=0.5)
