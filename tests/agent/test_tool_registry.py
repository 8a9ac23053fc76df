"""Tool registry: schemas from the ROS request types, safety-policy ranges, refused entries."""
from __future__ import annotations

import copy

import pytest
import yaml

from qwen_stack.paths import config_file
from qwen_stack.qwen_node.agent.tool_registry import RegistryError, ToolRegistry

from .srv_files import srv_file_request_fields


def tools_yaml() -> dict:
    return yaml.safe_load(config_file("tools.yaml").read_text())


def load(data, policy=None) -> ToolRegistry:
    return ToolRegistry.from_dict(data, srv_file_request_fields, policy)


def test_project_registry_loads_with_schemas_from_request_types():
    reg = load(tools_yaml(), safety_policy())
    drive = reg["drive_distance"]
    assert drive.actuating and drive.approval_wait_s == 0.0
    assert drive.parameters["properties"]["distance"] == {   # range: the policy's
        "type": "number", "minimum": -1.0, "maximum": 3.0, "description": "metres, + forward, - backward"}
    assert load(tools_yaml())["drive_distance"].parameters["properties"]["distance"] == {   # no policy, no range
        "type": "number", "description": "metres, + forward, - backward"}
    assert reg["go_to_pose"].parameters["properties"]["use_theta"]["type"] == "boolean"
    assert reg["grasp"].parameters["properties"]["object_name"]["type"] == "string"
    assert reg["describe_state"].parameters == {"type": "object", "properties": {}, "required": []}
    assert reg["go_to_point"].parameters["properties"]["x"]["maximum"] == 1000
    names = [f["function"]["name"] for f in reg.function_specs()]
    assert names[:3] == ["describe_state", "detect_objects", "drive_distance"] and "go_to_object" in names
    assert reg["describe_state"].adds_object_memory and not reg["drive_distance"].adds_object_memory
    detect = reg["detect_objects"]
    assert detect.kind == "perception" and not detect.actuating and not detect.service
    assert detect.parameters == {"type": "object", "properties": {}, "required": []}


@pytest.mark.parametrize("entry, message", [
    ({"name": "detect", "kind": "perception", "description": "d", "actuating": True}, "actuating must be false"),
    ({"name": "look", "kind": "grounding", "description": "d", "actuating": True, "target_tool": "go_to_pose",
      "adds_object_memory": True}, "only on a service tool"),
    ({"name": "state", "description": "d", "actuating": False, "service": "skills/describe_state",
      "interface": "qwen_stack_interfaces/srv/DescribeState", "model_fields": [], "adds_object_memory": "yes"},
     "adds_object_memory must be true or false"),
])
def test_perception_tool_entries_are_checked(entry, message):
    data = tools_yaml()
    data["tools"].append(entry)
    with pytest.raises(RegistryError, match=message):
        load(data)


def test_ros_types_agree_with_srv_files():
    pytest.importorskip("qwen_stack_interfaces", reason="ros_ws not built (scripts/build_ros_ws.sh)")
    from qwen_stack.qwen_node.agent.tool_registry import ros_request_fields
    for t in tools_yaml()["tools"]:
        if "interface" in t:
            assert dict(ros_request_fields(t["interface"])) == srv_file_request_fields(t["interface"])


def safety_policy() -> dict:
    return yaml.safe_load(config_file("safety_policy.yaml").read_text())


def test_project_registry_agrees_with_the_project_safety_policy():
    reg = load(tools_yaml(), safety_policy())
    for tool in reg.tools.values():
        if tool.kind == "service" and tool.actuating:
            assert tool.service in safety_policy()["services"]


def test_ranges_come_from_the_safety_policy_alone():
    policy = safety_policy()
    policy["services"]["skills/drive_distance"]["arguments"] = {"distance": {"min": -1.0, "max": 5.0},
                                                                "speed": {"min": 0.1, "max": 0.3}}
    policy["services"]["skills/grasp"]["arguments"] = {"object_name": {"max_length": 12}}
    reg = load(tools_yaml(), policy)
    props = reg["drive_distance"].parameters["properties"]
    assert (props["distance"]["minimum"], props["distance"]["maximum"]) == (-1.0, 5.0)
    assert (props["speed"]["minimum"], props["speed"]["maximum"]) == (0.1, 0.3)
    assert reg["grasp"].parameters["properties"]["object_name"]["maxLength"] == 12
    assert reg["go_to_pose"].parameters["properties"]["use_theta"]["enum"] == [True, False]


def test_a_policy_range_on_a_text_field_is_refused():
    policy = safety_policy()
    policy["services"]["skills/grasp"]["arguments"] = {"object_name": {"min": 0, "max": 1}}
    with pytest.raises(RegistryError, match="object_name"):
        load(tools_yaml(), policy)


def test_actuating_tool_missing_from_the_policy_is_refused():
    policy = safety_policy()
    del policy["services"]["skills/rotate"]
    with pytest.raises(RegistryError, match="not in the safety policy"):
        load(tools_yaml(), policy)


def test_interface_must_match_the_policy_type():
    policy = safety_policy()
    policy["services"]["skills/rotate"]["type"] = "qwen_stack_interfaces/srv/LookAt"
    with pytest.raises(RegistryError, match="differs from the safety policy"):
        load(tools_yaml(), policy)


def test_invalid_policy_is_refused():
    with pytest.raises(RegistryError, match="safety policy"):
        load(tools_yaml(), {"services": {"skills/rotate": {"type": "nope"}}})


def _with(change) -> dict:
    data = copy.deepcopy(tools_yaml())
    change(data)
    return data


def _tool(data, name):
    return next(t for t in data["tools"] if t["name"] == name)


@pytest.mark.parametrize("change, fragment", [
    (lambda d: _tool(d, "drive_distance").update(route="direct"), "unknown key(s) ['route']"),
    (lambda d: d.update(approval_wait_s=float("nan")), "approval_wait_s"),
    (lambda d: _tool(d, "drive_distance").update(model_fields=["distance", "wheels"]), "no request field 'wheels'"),
    (lambda d: _tool(d, "drive_distance").update(ranges={"distance": [-1, 1]}), "unknown key(s) ['ranges']"),
    (lambda d: _tool(d, "drive_distance").update(colour="red"), "unknown key"),
    (lambda d: _tool(d, "drive_distance").pop("actuating"), "missing key 'actuating'"),
    (lambda d: _tool(d, "drive_distance").update(timeout_s=0), "timeout_s"),
    (lambda d: _tool(d, "go_to_point").update(target_tool="grasp"), "target_tool"),
    (lambda d: _tool(d, "go_to_object").update(actuating=False), "must be actuating"),
    (lambda d: d["tools"].append(dict(_tool(d, "grasp"))), "defined twice"),
    (lambda d: _tool(d, "rotate").update(kind="teleport"), "kind must be"),
    (lambda d: d.pop("supervisor_proxy"), "supervisor_proxy"),
])
def test_bad_entries_are_refused_with_a_message(change, fragment):
    with pytest.raises(RegistryError, match=None) as err:
        load(_with(change))
    assert fragment in str(err.value)


def test_tool_the_policy_calls_actuating_cannot_be_declared_passive():
    data = _with(lambda d: _tool(d, "look_at").update(actuating=False))
    load(data)  # fine without a policy...
    with pytest.raises(RegistryError, match="actuating in the safety policy"):
        load(data, safety_policy())


def test_tool_needing_approval_waits_for_the_operator_on_top_of_its_timeout():
    """Issue 16 item 6: the planner gave up on release after its 10 s while the supervisor waited 30 s for the
    operator. The policy's needs_approval now adds approval_wait_s to the deadline sent to the supervisor."""
    reg = load(tools_yaml(), safety_policy())
    release, drive = reg["release"], reg["drive_distance"]
    assert release.approval_wait_s == tools_yaml()["approval_wait_s"] > 0
    assert release.call_timeout_s == release.timeout_s + release.approval_wait_s
    assert drive.call_timeout_s == drive.timeout_s
    policy = safety_policy()
    policy["services"]["skills/release"]["needs_approval"] = False
    assert load(tools_yaml(), policy)["release"].call_timeout_s == release.timeout_s
