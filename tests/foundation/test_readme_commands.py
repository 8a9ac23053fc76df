"""Every command README.md shows runs as written.

`readme_commands()` extracts the commands: each line of a ```bash block, and each inline code span
that starts like a command (`qwen-stack ...`, `bash ...`, `python -m ...`, `ros2 ...`). Every one
must have an entry in CHECKS saying how it is checked, so a command added to the README without a
check fails `test_every_readme_command_is_checked`. The checks, by kind:

- run: run exactly as written (bash, repository root, `.venv/bin` first on PATH as the README says).
- placeholder: the README writes DIR, NAME, CMD or "..."; run with the named value put in (a tiny
  random checkpoint for DIR), plus only the bound the entry names (e.g. --max-new-tokens 2).
- bounded: a long-running command (the demo, the stack, the server) run as written plus a bound
  (--duration, an empty mission, a free port), checked to start and stop cleanly.
- check: the demo with a real model: the same arguments go through `qwen-stack launch --check`,
  which validates every node parameter as the demo's launcher would and starts nothing (the model
  folder and the API key are the user's).
- help: the command's own --help (needs a GPU, or runs for minutes: the benchmarks, never run in the
  tests as the README says), plus the options the README writes must appear in it.
- mention: a program named in prose, not a command to run; or a full-ROS-install command, run only
  where `ros2`/system colcon exist (skipped with the reason elsewhere).

The parts' READMEs (console/, recorder/, ...) show synopses with placeholders: their `qwen-stack` and
`python -m qwen_stack.X` commands are checked at the help level (the subcommand exists, every option
written is one it has).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from qwen_stack.paths import SOURCE_ROOT

README = SOURCE_ROOT / "README.md"
VENV_BIN = Path(sys.executable).parent
COMMAND_STARTS = ("bash ", "qwen-stack ", ".venv/bin/", "python ", "ros2 ", "colcon ", "pip ", "$R ",
                  "OPENAI_API_KEY=", "R=")


def readme_commands(text: str) -> list[str]:
    """Commands in README text: lines of ```bash blocks (continuations joined, comments dropped) and
    inline spans that start like a command; whitespace normalised, in order, without repeats."""
    cmds = []
    for block in re.findall(r"^```(?:bash|sh)\n(.*?)^```", text, flags=re.S | re.M):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#"):
                cmds.append(" ".join(line.split()))
    prose = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    for span in re.findall(r"`([^`]+)`", prose):
        span = " ".join(span.split())
        if span.startswith(COMMAND_STARTS) and " " in span:  # one word names a program
            cmds.append(span)
    return list(dict.fromkeys(cmds))


def _env(**extra) -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def _bash(cmd: str, timeout: float, **env) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", cmd], cwd=SOURCE_ROOT, env=_env(**env), capture_output=True, text=True,
                          timeout=timeout)


def _ok(run: subprocess.CompletedProcess) -> str:
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-4000:]
    assert "Traceback" not in out, out[-4000:]
    return out


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    sys.path.insert(0, str(SOURCE_ROOT / "tests" / "engine"))
    try:
        from tiny_checkpoints import make_checkpoint
    finally:
        sys.path.pop(0)
    path = tmp_path_factory.mktemp("tiny_qwen35")
    make_checkpoint(path, arch="Qwen3_5MoeForConditionalGeneration", seed=0, vocab=248_320)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- the checks
def plan(cmd, _ctx):
    out = _ok(_bash(cmd, 120))
    assert "Qwen3.5-35B-A3B: nvfp4" in out and "total resident" in out


def rosenv_print(cmd, _ctx):
    out = _ok(_bash(cmd, 120))
    assert "ROS_AUTOMATIC_DISCOVERY_RANGE" in out


def rosenv_cmd(cmd, _ctx):  # CMD: a program printing what the README says the environment gives
    _ok(_bash(cmd.replace("CMD", "python -c 'import rclpy, qwen_stack_interfaces'"), 120))


def gpu_check(cmd, _ctx):
    """Runs as written; without TensorRT and a GPU it says so in one line (exit 3), with them it checks."""
    r = _bash(cmd, 600)
    if r.returncode == 3:
        assert r.stderr.startswith("gpu_check: ") and "Traceback" not in r.stderr, r.stderr
    else:
        _ok(r)


def generate(cmd, ctx):  # DIR: a tiny random checkpoint; "...": a prompt; [--compile] left out; 2 tokens
    c = cmd.replace(" [--compile]", "").replace("DIR", str(ctx["tiny"])).replace("...", "hello")
    _ok(_bash(c + " --max-new-tokens 2", 300))


def quantize(cmd, ctx):  # DIR: a tiny random checkpoint; OUT_DIR: a new folder
    out = ctx["tmp"] / "nvfp4"
    _ok(_bash(cmd.replace("OUT_DIR", str(out)).replace("DIR", str(ctx["tiny"])), 300))
    assert (out / "config.json").is_file()


def serve(cmd, ctx):  # DIR: a tiny random checkpoint; bounded: a free port, stopped once /health answers
    port = _free_port()
    proc = subprocess.Popen(["bash", "-c", f"exec {cmd.replace('DIR', str(ctx['tiny']))} --port {port}"],
                            cwd=SOURCE_ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while True:
            assert proc.poll() is None, proc.stdout.read()[-4000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    assert r.status == 200 and json.loads(r.read() or b"{}") is not None
                    break
            except OSError:
                assert time.monotonic() < deadline, "qwen-stack serve never answered /health"
                time.sleep(0.5)
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def launch_synopsis(cmd, _ctx):
    """NAME: profile camera; the optional parts written in; bounded by --duration 5."""
    c = (cmd.replace("NAME", "camera").replace("[--namespace robot1]", "--namespace robot1")
         .replace("[node.param:=value ...]", "camera.fps:=5 camera.width:=64 camera.height:=48"))
    out = _ok(_bash(c + " --duration 5 --status-period 2", 120))
    assert "started /robot1/camera" in out and "stack stopped (exit code 0)" in out


def demo(cmd, _ctx):
    """Bounded: no mission (QWEN_STACK_MISSION="", as the README documents) and --duration 20 for the
    launcher: bootstrap, the sim profile starts, no required node dies, Ctrl-C-like stop, exit 0. The
    console takes any free port (console.port:=0): a demo the user runs may hold 8080. The mission
    itself runs in tests/agent/test_e2e_sim.py."""
    out = _ok(_bash(cmd + " --duration 20 console.port:=0", 600, QWEN_STACK_MISSION=""))
    assert "[bootstrap] ready" in out and "--duration 20 s: stopping the stack" in out
    assert "stack stopped (exit code 0)" in out and "died" not in out


def demo_check(cmd, _ctx):
    """The demo's launcher arguments through `qwen-stack launch --check` (see the module docstring)."""
    args = cmd.split("bash scripts/demo.sh", 1)[1]
    out = _ok(_bash(f"qwen-stack launch --profile sim --check {args}", 120))
    assert "parameters checked; nothing started" in out


def runner_syntax(cmd, _ctx):
    """This suite's own runner (what CI runs): its syntax here; running it is running these tests."""
    assert cmd == "bash scripts/test.sh"
    _ok(_bash("bash -n scripts/test.sh", 30))


def bench_help(cmd, _ctx):
    """`$R bench/X.py` with R as the README sets it, asked for --help: R works, the script exists and parses
    its options (benchmarks take minutes; the README says none runs in the tests)."""
    r_line = next(c for c in readme_commands(README.read_text()) if c.startswith("R="))
    out = _ok(_bash(f"{r_line}; {cmd} --help", 300))
    assert "usage:" in out


def bench_as_written(cmd, _ctx):
    """`$R bench/X.py ...` run exactly as written with R as the README sets it (a probe of seconds)."""
    r_line = next(c for c in readme_commands(README.read_text()) if c.startswith("R="))
    out = _ok(_bash(f"{r_line}; {cmd}", 300))
    assert re.search(r"zum blauen Quadrat\.\s+(call|ANSWER)$", out, re.M), out[-2000:]


def r_assignment(cmd, _ctx):  # a shell variable for the lines below; used by each bench check
    _ok(_bash(f"{cmd}; $R -c 'import rclpy'", 120))


def help_with_options(cmd, _ctx):
    """--help of the subcommand; each option the README writes must be one it has."""
    words = cmd.split()
    n = 3 if words[:2] == ["python", "-m"] else 1
    while n < len(words) and re.fullmatch(r"[a-z][a-z0-9-]*", words[n]):
        n += 1  # the program and its (sub)subcommands: `qwen-stack bag summary`
    base = " ".join(words[:n])
    out = _ok(_bash(f"{base} --help", 120))
    for opt in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", " ".join(words[n:])):  # also inside [--opt X]
        assert opt in out, f"{opt} is not an option of {base}"


def as_written(cmd, _ctx):
    """Run exactly as written: the shipped stand-in brain (models/brain) answers in seconds."""
    _ok(_bash(cmd, 300))


def script_help(cmd, _ctx):
    """A benchmark written out in full (not through $R): asked for --help, as bench_help does."""
    assert "usage:" in _ok(_bash(f"{cmd} --help", 300))


def script_options(cmd, _ctx):
    """A benchmark with options, minutes to run: its --help must name each option the README writes."""
    script = cmd.split(" --")[0]
    out = _ok(_bash(f"{script} --help", 300))
    for opt in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", cmd[len(script):]):
        assert opt in out, f"{opt} is not an option of {script}"


def pip_gpu_extra(cmd, _ctx):
    """Not run (it installs from NVIDIA's index): the `gpu` extra it names must exist."""
    from importlib.metadata import metadata

    assert "gpu" in (metadata("qwen_stack").get_all("Provides-Extra") or [])


def full_ros(cmd, _ctx):
    """Full ROS 2 installs only (no ros2cli/system colcon wheels in the pip world)."""
    tool = cmd.split()[0]
    if tool == "ros2" and shutil.which("ros2"):
        _ok(_bash(cmd.split(" profile:=")[0] + " --show-args", 120))
    elif tool == "colcon" and os.environ.get("ROS_DISTRO"):
        _ok(_bash(f"cd ros_ws && {cmd} --help", 120))
    else:
        pytest.skip(f"{tool}: a full ROS 2 install (the launch file is checked in test_stack_config.py)")


def mention(cmd, _ctx):
    """A program named in prose ("plain `colcon build` fails", "`ros2 launch` files"): nothing to run."""


CHECKS = {
    "bash scripts/demo.sh": demo,
    "bash scripts/test.sh": runner_syntax,
    "bash scripts/demo.sh qwen_node.backend:=local qwen_node.model_dir:=/path/to/Qwen3.5-35B-A3B": demo_check,
    "OPENAI_API_KEY=... bash scripts/demo.sh qwen_node.backend:=openai qwen_node.openai_base_url:=http://127.0.0.1:8000/v1"
    " qwen_node.openai_model:=NAME": demo_check,
    ".venv/bin/qwen-stack serve --model DIR": serve,
    'R=".venv/bin/python -m qwen_stack.rosenv .venv/bin/python"': r_assignment,
    **{f"$R bench/{name}.py": bench_help for name in (
        "camera_stream", "sim_rate", "safety_latency", "agent_latency", "perception", "console_estop_latency",
        "engine", "nvfp4", "trt_export", "brain_eval")},
    '$R bench/brain_first_turn.py "Schaff bitte {obj} zum blauen Quadrat." --objects "den roten Ball"':
        bench_as_written,
    "bash scripts/demo.sh qwen_node.model_dir:=models/brain": demo_check,
    "bash scripts/demo.sh qwen_node.backend:=replay": demo_check,
    '.venv/bin/qwen-stack generate --model models/brain --prompt "Bring the red cube to the blue square."': as_written,
    ".venv/bin/python -m qwen_stack.rosenv .venv/bin/python bench/brain_eval.py": script_help,
    ".venv/bin/python -m qwen_stack.rosenv .venv/bin/python bench/brain_eval.py --text-only --text-conversations 0 "
    "--rollout 30 --backends bf16": script_options,   # ~10 min: run by hand (models/README.md's figures)
    "qwen-stack train-brain --out DIR": help_with_options,
    "qwen-stack task --approve": help_with_options,
    "qwen-stack record": help_with_options,            # records until Ctrl-C
    "qwen-stack bag summary": help_with_options,       # needs a recording (FILE)
    'qwen-stack task "..."': help_with_options,
    "ros2 launch": mention,
    "colcon build": mention,
    ".venv/bin/qwen-stack launch --profile NAME [--namespace robot1] [node.param:=value ...]": launch_synopsis,
    "colcon build --symlink-install": full_ros,
    "ros2 launch qwen_stack bringup.launch.py profile:=NAME namespace:=robot1": full_ros,
    "ros2 launch qwen_stack sim_gazebo.launch.py": full_ros,
    "python -m qwen_stack.rosenv": rosenv_print,
    "python -m qwen_stack.rosenv CMD": rosenv_cmd,
    "qwen-stack generate --model DIR --prompt ... [--compile]": generate,
    "qwen-stack quantize --model DIR --out OUT_DIR": quantize,
    "qwen-stack plan --model 35B-A3B --quant nvfp4": plan,
    "qwen-stack export-onnx": help_with_options,
    "qwen-stack build-engines": help_with_options,
    "pip install '.[gpu]'": pip_gpu_extra,
    "python -m qwen_stack.trt_engines.gpu_check": gpu_check,
}
SLOW = {demo, serve, generate, quantize, bench_help, bench_as_written, as_written, script_help, script_options}


def part_readme_commands() -> list[tuple[str, str]]:
    """(README, command) for the `qwen-stack ...` and `python -m qwen_stack.X ...` commands of every
    part's README (the parts' READMEs show synopses with placeholders: their options are checked)."""
    out = []
    for readme in sorted(SOURCE_ROOT.glob("*/**/README.md")):
        if any(part in (".venv", "ros_ws", "node_modules") for part in readme.relative_to(SOURCE_ROOT).parts):
            continue
        for cmd in readme_commands(readme.read_text()):
            cmd = cmd.removeprefix(".venv/bin/")
            if cmd.startswith("qwen-stack ") or (cmd.startswith("python -m qwen_stack.")
                                                 and not cmd.startswith("python -m qwen_stack.rosenv")):
                out.append((str(readme.relative_to(SOURCE_ROOT)), cmd))
    return out


@pytest.mark.parametrize("readme, command", part_readme_commands())
def test_part_readme_commands_name_real_subcommands_and_options(readme, command):
    help_with_options(command, None)


def test_every_readme_command_is_checked():
    found = readme_commands(README.read_text())
    unchecked = [c for c in found if c not in CHECKS]
    assert not unchecked, f"README commands with no entry in CHECKS (say how each is checked): {unchecked}"
    stale = [c for c in CHECKS if c not in found]
    assert not stale, f"CHECKS entries the README no longer shows: {stale}"


def test_extraction_finds_block_lines_continuations_and_inline_commands():
    text = ("Run `qwen-stack plan --model X` or\n`bash a.sh\n  --b`; not `config/x.yaml`.\n"
            "```bash\nfoo --x   # comment\nbar \\\n    --y\n# only a comment\n```\n")
    assert readme_commands(text) == ["foo --x", "bar --y", "qwen-stack plan --model X", "bash a.sh --b"]


@pytest.mark.parametrize("command", [pytest.param(c, marks=[pytest.mark.slow] if CHECKS[c] in SLOW else [])
                                     for c in CHECKS])
def test_readme_command_runs(command, tiny_dir_lazy, tmp_path):
    CHECKS[command](command, {"tiny": tiny_dir_lazy, "tmp": tmp_path})


@pytest.fixture
def tiny_dir_lazy(request):
    """The tiny checkpoint only for the checks that use it (it takes a while to write)."""
    if CHECKS[request.node.callspec.params["command"]] in (generate, quantize, serve):
        return request.getfixturevalue("tiny_dir")
    return None
