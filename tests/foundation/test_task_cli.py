"""`qwen-stack task`: refuses what is not a mission, fails fast with a hint when no stack runs, and
prints the task's feedback in whole lines (no blank lines; the answer ends its line)."""
from __future__ import annotations

import io
import random
import subprocess
import sys

import pytest

from qwen_stack.qwen_node.task_cli import START_HINT, FeedbackPrinter, instruction_problem, missing_server_message


def _task(ros_env, *args, timeout=60):
    return subprocess.run([sys.executable, "-m", "qwen_stack.cli", "task", *args], env=ros_env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("instruction", ["", "   ", "\n\t"])
def test_empty_instruction_is_refused_before_any_ros(ros_env, instruction):
    out = _task(ros_env, instruction)
    assert out.returncode == 2
    assert out.stderr.startswith("qwen-stack task: the instruction is empty") and out.stdout == ""
    assert instruction_problem(instruction) and instruction_problem("go") is None


@pytest.mark.ros
def test_no_stack_fails_within_wait_node_with_a_hint(ros_env):
    """Nothing runs in this namespace: it gives up after --wait-node (5 s), not --wait-server (60 s)."""
    pytest.importorskip("rclpy")
    ns = f"/nobody_{random.randrange(10**6)}"
    # the 40 s bound only keeps a regression (the old 60 s silent wait) from hanging the suite
    out = _task(ros_env, "go", "--ros-args", "-r", f"__ns:={ns}", timeout=40)
    assert out.returncode == 2, out.stderr
    assert f"no qwen_node is running (no action server {ns}/agent/run_task after 5 s)" in out.stderr
    assert START_HINT in out.stderr and "Traceback" not in out.stderr


def test_missing_server_message_says_which_case():
    assert "did not come up within 60 s (a model still loading?)" in missing_server_message("/agent/run_task", True, 60)
    assert START_HINT in missing_server_message("/agent/run_task", False, 5)


def test_feedback_is_printed_in_whole_lines():
    """The feedback of the demo mission: text pieces with blank lines between thoughts and calls, and
    an answer without a final newline (it ran into the next log line)."""
    out = io.StringIO()
    p = FeedbackPrinter(out)
    p.thinking("The task is to find\n the red cube.")
    p.text("\n\n")
    p.other("-> describe_state {}")
    p.other("<- describe_state: succeeded {}")
    p.thinking("Check the result.")
    p.text("\n\n\n")
    p.thinking("The cube has been put down.")
    p.text("\n\nI found the red cube ")
    p.text("and brought it")
    p.text(" to the blue square.")
    p.other("SUCCESS after 6 tool calls: done")
    assert out.getvalue().split("\n") == [
        "  (thinking) The task is to find the red cube.",
        "-> describe_state {}",
        "<- describe_state: succeeded {}",
        "  (thinking) Check the result.",
        "  (thinking) The cube has been put down.",
        "I found the red cube and brought it to the blue square.",
        "SUCCESS after 6 tool calls: done",
        "",
    ]


def test_feedback_lines_of_a_multi_line_answer_and_quiet_thinking():
    out = io.StringIO()
    p = FeedbackPrinter(out, quiet_thinking=True)
    p.thinking("hidden")
    p.text("first line\n\n  second")
    p.end_text()
    p.end_text()
    assert out.getvalue() == "first line\n  second\n"
