"""RealTimePacer, the simulator's stepping rule without MuJoCo or ROS: sim time follows wall time x the real
time factor, steps never run past a sensor deadline, and a machine that cannot keep up re-anchors."""
from __future__ import annotations

import pytest

from qwen_stack.sim.stepping import RealTimePacer, SensorSchedule

DT = 0.002


def run(rtf: float, wall_per_step: float, seconds: float, next_due=lambda t: 1e9, max_lag=0.25):
    """A fake stepping loop: a physics step costs wall_per_step of wall time, sleeps take what they ask."""
    wall = sim = 0.0
    pacer = RealTimePacer(rtf, DT, max_lag, wall, sim)
    steps_taken, anchors, max_step_batch, past_due = 0, 0, 0, 0
    while wall < seconds:
        sleep_s, steps, lagging = pacer.next(wall, sim, next_due(sim))
        if sleep_s:
            assert steps == 0
            wall += sleep_s
            continue
        assert steps >= 1
        due = next_due(sim)
        sim += steps * DT
        past_due += sim > due + DT * (1 + 1e-6) and steps > 1
        wall += steps * wall_per_step
        steps_taken += steps
        anchors += lagging
        max_step_batch = max(max_step_batch, steps)
    return sim, wall, anchors, max_step_batch, past_due


@pytest.mark.parametrize("rtf", [0.5, 1.0, 3.0])
def test_sim_time_follows_wall_time_times_the_factor(rtf):
    sim, wall, anchors, _, _ = run(rtf, wall_per_step=DT / 20, seconds=5.0)
    assert sim == pytest.approx(wall * rtf, abs=0.01) and anchors == 0


def test_steps_stop_at_the_next_sensor_deadline():
    schedule = SensorSchedule({"camera": 15.0, "laser": 10.0})
    seen = []

    def next_due(t):
        seen.extend(schedule.pop_due(t))
        return schedule.next_due()
    *_, past_due = run(1.0, wall_per_step=DT / 20, seconds=2.0, next_due=next_due)
    assert past_due == 0
    assert 25 <= seen.count("camera") <= 32 and 18 <= seen.count("laser") <= 22


def test_a_machine_too_slow_re_anchors_and_runs_slower_than_real_time():
    sim, wall, anchors, max_batch, _ = run(1.0, wall_per_step=DT * 2, seconds=5.0)    # physics at half speed
    assert anchors >= 1 and max_batch <= int(0.25 / DT) + 2   # never a catch-up burst longer than the lag bound
    assert sim == pytest.approx(wall / 2, rel=0.1)
