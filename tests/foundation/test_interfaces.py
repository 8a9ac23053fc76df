"""qwen_stack_interfaces: the colcon build of ros_ws/, and the generated types in use.

- scripts/build_ros_ws.sh builds the workspace from scratch into a temporary build/install base
  (slow: ~45 s on 2 cores) and the result is usable in the stack's ROS environment;
- the installed types match the .msg/.srv/.action definitions in ros_ws/src and survive a
  serialization round trip with every field set;
- a service and the RunTask action are called across two processes over real DDS: the server is
  this file run as a script (`python test_interfaces.py serve`, a test double named
  InterfaceTestServer), the client is the test.

The cross-process and round-trip tests use ros_ws/install (built by scripts/bootstrap.sh) and
skip with a reason when it is not built.
"""
from __future__ import annotations

import importlib
import json
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = ROOT / "scripts" / "build_ros_ws.sh"
INTERFACE_SRC = ROOT / "ros_ws" / "src" / "qwen_stack_interfaces"
PY_SITE = f"lib/python{sys.version_info.major}.{sys.version_info.minor}/site-packages"

# Outcomes of the test double's services: the test checks the client got exactly these.
KNOWN_TOOL_SERVICE = "skills/drive_distance"


# ---------------------------------------------------------------------------------------------
# Test double: a server process offering ResetEStop, CallTool and the RunTask action.
# ---------------------------------------------------------------------------------------------
def reset_estop_response(reason: str, operator_name: str) -> tuple[bool, str]:
    """The double's rule: a reset needs a reason."""
    if not reason.strip():
        return False, "a reason is required"
    return True, f"reset by {operator_name}: {reason}"


def serve() -> int:
    """Run InterfaceTestServer until SIGTERM; prints 'ready' once its services exist."""
    import rclpy
    from rclpy.action import ActionServer
    from rclpy.executors import ExternalShutdownException

    from qwen_stack import topics
    from qwen_stack_interfaces.action import RunTask
    from qwen_stack_interfaces.msg import SafetyVerdict, ToolCall
    from qwen_stack_interfaces.srv import CallTool, ResetEStop

    def on_reset(request, response):
        response.ok, response.message = reset_estop_response(request.reason, request.operator_name)
        return response

    def on_call_tool(request, response):
        response.accepted = request.service == KNOWN_TOOL_SERVICE
        response.success = response.accepted
        response.verdict_level = SafetyVerdict.ALLOW if response.accepted else SafetyVerdict.REJECT
        response.reasons = [] if response.accepted else [f"unknown service {request.service}", "not sent"]
        response.response_json = json.dumps({"arguments": json.loads(request.arguments_json),
                                             "source": request.source, "timeout_s": request.timeout_s})
        return response

    def on_task(goal_handle):
        # One feedback per word of the instruction (at most max_steps), each carrying a ToolCall.
        words = goal_handle.request.instruction.split()[: goal_handle.request.max_steps or None]
        for step, word in enumerate(words):
            feedback = RunTask.Feedback(kind="tool_call", text=word)
            feedback.tool_call = ToolCall(task_id="double", step=step, name=word, status="succeeded")
            goal_handle.publish_feedback(feedback)
            time.sleep(0.05)
        goal_handle.succeed()
        return RunTask.Result(success=True, message=" ".join(words).upper(), steps=len(words))

    rclpy.init()
    node = rclpy.create_node("interface_test_server")
    node.create_service(ResetEStop, topics.SAFETY_RESET_ESTOP, on_reset)
    node.create_service(CallTool, topics.SAFETY_CALL_TOOL, on_call_tool)
    ActionServer(node, RunTask, topics.AGENT_RUN_TASK, on_task)
    print("ready", flush=True)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------
def _interfaces_or_skip():
    from qwen_stack.paths import interfaces_install_dir

    if not (interfaces_install_dir() / "qwen_stack_interfaces").is_dir():
        pytest.skip("ros_ws is not built: run scripts/build_ros_ws.sh")
    return pytest.importorskip("qwen_stack_interfaces", reason="ros_ws/install not on this process's paths")


def _definition_fields(path: Path) -> list[list[str]]:
    """Field names per section ('---' separated) of a .msg/.srv/.action file; constants skipped."""
    sections: list[list[str]] = [[]]
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line == "---":
            sections.append([])
        elif line and "=" not in line:
            sections[-1].append(line.split()[1])
    return sections


def _value_for(type_name: str, rng: random.Random):
    """A non-default value for a rosidl field type (as in get_fields_and_field_types())."""
    if type_name.startswith("sequence<"):
        inner = type_name[len("sequence<"):-1]
        return [_value_for(inner, rng) for _ in range(rng.randint(1, 3))]
    if type_name == "string":
        return "".join(rng.choice("abcxyz é{}\"") for _ in range(rng.randint(1, 12)))
    if type_name == "boolean":
        return True
    if type_name in ("double", "float"):
        return rng.uniform(-100.0, 100.0) if type_name == "double" else float(rng.randint(-100, 100))
    if re.fullmatch(r"u?int(8|16|32|64)|octet", type_name):
        return rng.randint(1, {"int8": 127, "uint8": 255, "octet": 255, "int16": 32767}.get(type_name, 100_000))
    if "/" in type_name:  # nested message: 'pkg/Name'
        pkg, name = type_name.split("/")
        return _filled(getattr(importlib.import_module(f"{pkg}.msg"), name), rng)
    raise AssertionError(f"no value generator for field type {type_name!r}")


def _filled(cls, rng: random.Random):
    """An instance of a generated message class with every field set to a non-default value."""
    obj = cls()
    for field, type_name in cls.get_fields_and_field_types().items():
        setattr(obj, field, _value_for(type_name, rng))
    return obj


# ---------------------------------------------------------------------------------------------
# (a) the build
# ---------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_build_script_builds_workspace_from_scratch(tmp_path, monkeypatch):
    base = ["--build-base", str(tmp_path / "build"), "--install-base", str(tmp_path / "install"),
            "--log-base", str(tmp_path / "log")]
    for attempt in ("from scratch", "again, nothing changed"):
        run = subprocess.run(["bash", str(BUILD_SCRIPT), "--symlink-install", *base],
                             capture_output=True, text=True, timeout=900)
        assert run.returncode == 0, f"build {attempt} failed:\n{run.stdout[-4000:]}\n{run.stderr[-4000:]}"
        assert "interfaces load" in run.stdout, run.stdout[-2000:]
        # quiet when it works: colcon's progress and setuptools'/CMake's warnings stay in the log
        assert len(run.stdout.splitlines()) == 1 and run.stderr == "", run.stdout[-2000:] + run.stderr[-2000:]
        assert "WARNING" in (tmp_path / "log" / "build_ros_ws.output.log").read_text()

    install = tmp_path / "install"
    iface = install / "qwen_stack_interfaces"
    for lib in ("rosidl_generator_c", "rosidl_typesupport_c", "rosidl_typesupport_fastrtps_c",
                "rosidl_typesupport_introspection_c", "rosidl_generator_py"):
        assert (iface / "lib" / f"libqwen_stack_interfaces__{lib}.so").is_file(), lib
    assert (iface / PY_SITE / "qwen_stack_interfaces" / "action" / "_run_task.py").is_file()

    # qwen_stack (the ament_python package at the repository root): executables where
    # ros2 launch / ros2 run look for them, package.xml, launch files and config in share/.
    from importlib.metadata import distribution

    scripts = {ep.name for ep in distribution("qwen_stack").entry_points if ep.group == "console_scripts"}
    assert scripts, "qwen_stack declares no console_scripts"
    for name in scripts:
        exe = install / "qwen_stack" / "lib" / "qwen_stack" / name
        assert exe.is_file() and os.access(exe, os.X_OK), f"{exe} missing or not executable"
    share = install / "qwen_stack" / "share"
    assert (share / "ament_index" / "resource_index" / "packages" / "qwen_stack").is_file()
    assert (share / "qwen_stack" / "package.xml").is_file()
    assert list((share / "qwen_stack" / "launch").glob("*.launch.py"))
    assert (share / "qwen_stack" / "config" / "fastdds.xml").is_file()

    # In the stack's ROS environment pointed at this install: ament_index finds both packages,
    # the interfaces come from this build, qwen_stack from the checkout (not the build's copy).
    monkeypatch.setenv("QWEN_STACK_ROS_WS_INSTALL", str(install))
    from qwen_stack.rosenv import ros_environment

    probe = subprocess.run(
        [sys.executable, "-c",
         "import json, qwen_stack, qwen_stack_interfaces\n"
         "from ament_index_python.packages import get_package_prefix\n"
         "from qwen_stack_interfaces.srv import ResetEStop\n"
         "from rclpy.serialization import serialize_message, deserialize_message\n"
         "r = ResetEStop.Request(reason='r', operator_name='o')\n"
         "assert deserialize_message(serialize_message(r), ResetEStop.Request) == r\n"
         "print(json.dumps({'iface': qwen_stack_interfaces.__file__, 'qwen_stack': qwen_stack.__file__,\n"
         "  'iface_prefix': get_package_prefix('qwen_stack_interfaces'),\n"
         "  'prefix': get_package_prefix('qwen_stack')}))"],
        env=ros_environment(), capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert probe.returncode == 0, probe.stderr
    found = json.loads(probe.stdout.strip().splitlines()[-1])
    assert Path(found["iface"]).is_relative_to(iface)
    assert Path(found["iface_prefix"]) == iface
    assert Path(found["prefix"]) == install / "qwen_stack"
    assert Path(found["qwen_stack"]).resolve() == ROOT / "qwen_stack" / "__init__.py"


@pytest.mark.slow
def test_build_script_shows_colcons_output_when_the_build_fails(tmp_path):
    base = ["--build-base", str(tmp_path / "build"), "--install-base", str(tmp_path / "install"),
            "--log-base", str(tmp_path / "log")]
    run = subprocess.run(["bash", str(BUILD_SCRIPT), *base, "--cmake-args", "-DCMAKE_PROJECT_INCLUDE=/no/such.cmake"],
                         capture_output=True, text=True, timeout=900)
    assert run.returncode != 0
    assert "Failed   <<< " in run.stderr and "/no/such.cmake" in run.stderr   # colcon's own lines
    assert "build_ros_ws.sh: colcon build failed" in run.stderr


# ---------------------------------------------------------------------------------------------
# (c) the types
# ---------------------------------------------------------------------------------------------
def _all_types():
    """(definition file, [generated classes per section]) for every interface in ros_ws/src."""
    out = []
    for path in sorted(INTERFACE_SRC.glob("*/*")):
        if path.suffix not in (".msg", ".srv", ".action"):
            continue
        mod = importlib.import_module(f"qwen_stack_interfaces.{path.suffix[1:]}")
        cls = getattr(mod, path.stem)
        sections = {".msg": [], ".srv": ["Request", "Response"], ".action": ["Goal", "Result", "Feedback"]}
        out.append((path, [getattr(cls, s) for s in sections[path.suffix]] or [cls]))
    return out


def test_installed_types_match_definitions():
    _interfaces_or_skip()
    types = _all_types()
    assert len(types) == len(list(INTERFACE_SRC.glob("*/*.*"))), "a definition has no generated type"
    for path, classes in types:
        sections = _definition_fields(path)
        assert len(sections) == len(classes), path.name
        for fields, cls in zip(sections, classes):
            generated = list(cls.get_fields_and_field_types())
            assert generated == fields, (
                f"{cls.__name__} has fields {generated}, {path.relative_to(ROOT)} says {fields}: "
                "ros_ws/install is stale, run scripts/build_ros_ws.sh")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_type_round_trips_with_all_fields_set(seed):
    _interfaces_or_skip()
    from rclpy.serialization import deserialize_message, serialize_message

    rng = random.Random(seed)
    for path, classes in _all_types():
        for cls in classes:
            msg = _filled(cls, rng)
            if cls.get_fields_and_field_types():
                assert msg != cls(), f"{cls.__name__}: filler left every field at its default"
            back = deserialize_message(serialize_message(msg), cls)
            assert back == msg, f"{path.name} {cls.__name__}: {back} != {msg}"


def test_safety_verdict_levels_are_ordered_most_restrictive_last():
    _interfaces_or_skip()
    from qwen_stack_interfaces.msg import SafetyVerdict

    levels = [SafetyVerdict.ALLOW, SafetyVerdict.LIMIT, SafetyVerdict.SLOWDOWN,
              SafetyVerdict.STOP, SafetyVerdict.REJECT, SafetyVerdict.ESTOP]
    assert levels == sorted(levels) and len(set(levels)) == len(levels)


def test_bad_field_values_are_rejected_when_checked():
    """The Kilted generated types check field values only with check_fields=True (or
    ROS_PYTHON_CHECK_FIELDS=1). Unchecked, SafetyVerdict(level=256) serializes as level 0 (ALLOW)
    and a str in a float64 field aborts the process (a C assert) at publish: stack code builds its
    own interface messages with check_fields=True."""
    _interfaces_or_skip()
    from qwen_stack_interfaces.msg import SafetyVerdict
    from qwen_stack_interfaces.srv import DriveDistance

    with pytest.raises(AssertionError, match="level"):
        SafetyVerdict(level=256, check_fields=True)  # uint8
    with pytest.raises(AssertionError, match="distance"):
        DriveDistance.Request(distance="1.0", check_fields=True)  # float64
    with pytest.raises(AssertionError, match="reasons"):
        SafetyVerdict(reasons=[1, 2], check_fields=True)  # string[]
    with pytest.raises(AssertionError, match="Invalid arguments"):
        SafetyVerdict(levle=3, check_fields=True)  # misspelt field
    ok = SafetyVerdict(level=SafetyVerdict.ESTOP, reasons=["e-stop pressed"], check_fields=True)
    assert ok.level == SafetyVerdict.ESTOP


# ---------------------------------------------------------------------------------------------
# (b) across processes, over DDS
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def server_node(ros_env):
    from tests.ros_processes import stop_and_read    # not at the top: this file also runs as the server script

    _interfaces_or_skip()
    proc = subprocess.Popen([sys.executable, __file__, "serve"], env=ros_env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = proc.stdout.readline()
    if line.strip() != "ready":
        pytest.fail(f"InterfaceTestServer did not start: {line}{stop_and_read(proc)}")
    yield proc
    stop_and_read(proc)


@pytest.fixture
def client_node():
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("interface_test_client", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    yield node, executor
    executor.shutdown()
    node.destroy_node()
    context.try_shutdown()


def _call(node, executor, srv_type, name, request, timeout=20.0):
    client = node.create_client(srv_type, name)
    assert client.wait_for_service(timeout_sec=timeout), f"service {name} not discovered"
    future = client.call_async(request)
    executor.spin_until_future_complete(future, timeout_sec=timeout)
    assert future.done(), f"no response from {name} within {timeout} s"
    return future.result()


@pytest.mark.ros
def test_services_across_processes(server_node, client_node):
    from qwen_stack import topics
    from qwen_stack_interfaces.msg import SafetyVerdict
    from qwen_stack_interfaces.srv import CallTool, ResetEStop

    node, executor = client_node
    for reason, operator in (("bumper checked", "ana"), ("  ", "bob")):
        resp = _call(node, executor, ResetEStop, topics.SAFETY_RESET_ESTOP,
                     ResetEStop.Request(reason=reason, operator_name=operator))
        assert (resp.ok, resp.message) == reset_estop_response(reason, operator)

    args = {"distance": 0.5, "speed": 0.2}
    resp = _call(node, executor, CallTool, topics.SAFETY_CALL_TOOL,
                 CallTool.Request(service=KNOWN_TOOL_SERVICE, arguments_json=json.dumps(args),
                                  source="planner", timeout_s=2.5))
    assert (resp.accepted, resp.success, resp.verdict_level, list(resp.reasons)) == \
        (True, True, SafetyVerdict.ALLOW, [])
    assert json.loads(resp.response_json) == {"arguments": args, "source": "planner", "timeout_s": 2.5}

    resp = _call(node, executor, CallTool, topics.SAFETY_CALL_TOOL,
                 CallTool.Request(service="skills/teleport", arguments_json="{}", source="console"))
    assert (resp.accepted, resp.success, resp.verdict_level) == (False, False, SafetyVerdict.REJECT)
    assert list(resp.reasons) == ["unknown service skills/teleport", "not sent"]


@pytest.mark.ros
def test_run_task_action_across_processes(server_node, client_node):
    from rclpy.action import ActionClient

    from qwen_stack import topics
    from qwen_stack_interfaces.action import RunTask

    node, executor = client_node
    client = ActionClient(node, RunTask, topics.AGENT_RUN_TASK)
    assert client.wait_for_server(timeout_sec=20.0), "RunTask server not discovered"
    feedback = []
    goal_future = client.send_goal_async(RunTask.Goal(instruction="pick the red cube now", max_steps=3),
                                         feedback_callback=lambda msg: feedback.append(msg.feedback))
    executor.spin_until_future_complete(goal_future, timeout_sec=20.0)
    handle = goal_future.result()
    assert handle is not None and handle.accepted
    result_future = handle.get_result_async()
    executor.spin_until_future_complete(result_future, timeout_sec=20.0)
    result = result_future.result().result
    assert (result.success, result.message, result.steps) == (True, "PICK THE RED", 3)
    # Feedback is best-effort in timing but each message that arrived is complete and in order.
    assert feedback, "no feedback received"
    words = ["pick", "the", "red"]
    for fb in feedback:
        assert fb.kind == "tool_call" and fb.tool_call.name == fb.text == words[fb.tool_call.step]
    assert [fb.tool_call.step for fb in feedback] == sorted(fb.tool_call.step for fb in feedback)
    client.destroy()


if __name__ == "__main__":
    if sys.argv[1:] == ["serve"]:
        sys.exit(serve())
    sys.exit(f"usage: {sys.argv[0]} serve")
