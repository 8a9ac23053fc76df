"""SkillRun, the motion skills' rules without ROS: done, e-stop, stopping, clock jump, deadline in sim time
stretched by slowed time (capped), and the expected durations."""
from __future__ import annotations

import math

import pytest

from qwen_stack.sim.skill_control import Pose2D, SkillLimits, Twist2D
from qwen_stack.sim.skill_run import (HELD_STILL_S, SLOWED_CAP, SkillRun, expected_drive_s, expected_go_to_pose_s,
                                      expected_rotate_s, slower_than_half)

LIM = SkillLimits(max_linear=0.5, max_angular=1.0)
P0 = Pose2D(0.0, 0.0, 0.0)


class Ctl:
    """A controller double: drives at 0.2 m/s until `done_at` updates have been made."""
    def __init__(self, done_at: int = 10**9):
        self.n, self.done_at, self.done = 0, done_at, False

    def update(self, pose, velocity, stamp=None):
        self.n += 1
        self.done = self.n >= self.done_at
        return Twist2D(0.0, 0.0) if self.done else Twist2D(0.2, 0.0)


def test_done_sends_the_last_command_with_the_outcome():
    run = SkillRun(Ctl(done_at=3), 0.0, 5.0, 1.0, LIM)
    ticks = [run.step(P0, Twist2D(0.2, 0.0), 0.1 * i) for i in range(3)]
    assert [t.outcome for t in ticks] == [None, None, (True, "done")]
    assert ticks[-1].command == Twist2D(0.0, 0.0)


@pytest.mark.parametrize("kw, words", [({"stopping": True}, "stopping"), ({"estop_latched": True}, "e-stop")])
def test_stopping_and_estop_end_the_skill_without_a_command(kw, words):
    run = SkillRun(Ctl(), 0.0, 5.0, 1.0, LIM)
    assert run.step(P0, Twist2D(0.0, 0.0), 0.0).outcome is None
    tick = run.step(P0, Twist2D(0.2, 0.0), 0.1, **kw)
    assert tick.command is None and tick.outcome[0] is False and words in tick.outcome[1]


def test_a_backward_clock_ends_the_skill_at_once():
    run = SkillRun(Ctl(), 100.0, 5.0, 1.0, LIM)
    run.step(P0, Twist2D(0.2, 0.0), 100.0)
    tick = run.step(P0, Twist2D(0.2, 0.0), 0.05)
    assert not tick.outcome[0] and "jumped back" in tick.outcome[1]


def test_deadline_is_sim_time_and_slowed_time_extends_it_up_to_the_cap():
    def ends_at(speed: float, expected: float) -> float:
        run = SkillRun(Ctl(), 0.0, expected, 2.0, LIM)
        t = 0.0
        while (tick := run.step(P0, Twist2D(speed, 0.0), t)).outcome is None:
            t += 0.1
        assert "timed out" in tick.outcome[1]
        return t
    assert ends_at(0.2, 1.0) == pytest.approx(1.0 + 2.0, abs=0.11)                 # full speed: no extension
    assert ends_at(0.06, 1.0) == pytest.approx(1.0 + 2.0 + SLOWED_CAP, abs=0.11)   # held at 0.3: capped
    assert ends_at(0.06, 20.0) == pytest.approx(20.0 + 2.0 + SLOWED_CAP * 20.0, abs=0.2)   # the cap scales


def test_slower_than_half_reads_the_commands_main_axis():
    assert slower_than_half(Twist2D(0.4, 0.1), Twist2D(0.1, 0.1), LIM)
    assert not slower_than_half(Twist2D(0.4, 0.1), Twist2D(0.3, 0.0), LIM)
    assert slower_than_half(Twist2D(0.0, 0.8), Twist2D(0.0, -0.2), LIM)             # against the command
    assert not slower_than_half(Twist2D(0.0, 0.0), Twist2D(0.0, 0.0), LIM)


def test_expected_durations():
    lim = SkillLimits(max_linear=0.5, max_angular=1.0, linear_accel=0.5, angular_accel=2.0, default_angular=0.8)
    assert expected_drive_s(-1.0, 0.25, lim) == pytest.approx(4.0 + 0.5)
    assert expected_rotate_s(math.pi, 0.5, lim) == pytest.approx(2 * math.pi + 0.25)
    assert expected_go_to_pose_s(2.0, 0.4, lim) == pytest.approx(5.0 + 2 * math.pi / 0.8)


def test_a_base_held_still_under_a_command_ends_the_skill_after_held_still_s():
    """runs/brain_eval_sim9 none-16: the supervisor held the base (an object in its stop zone) while go_to_pose
    asked for 0.3 m/s, and the skill waited for its stretched deadline, 48 s a try. Now HELD_STILL_S."""
    run = SkillRun(Ctl(), 0.0, 9.55, 10.0, LIM)
    t = 0.0
    while (tick := run.step(P0, Twist2D(0.0, 0.0), t)).outcome is None:
        t += 0.05
    assert not tick.outcome[0] and "held still" in tick.outcome[1] and "stop zone" in tick.outcome[1]
    assert t == pytest.approx(HELD_STILL_S + 0.05, abs=0.06)


def test_creeping_or_moving_again_resets_the_held_still_time():
    run = SkillRun(Ctl(), 0.0, 100.0, 10.0, LIM)
    t = 0.0
    for _ in range(10):   # 4 s still, then 0.5 s of creep at 0.05 m/s, over and over: never held 5 s
        for v in [0.0] * 80 + [0.05] * 10:
            assert run.step(P0, Twist2D(v, 0.0), t).outcome is None
            t += 0.05
