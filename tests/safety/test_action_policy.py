"""Action vetting against the policy YAML, the approval book, and invalid policies."""
from __future__ import annotations

import json

import pytest

from qwen_stack.paths import config_file
from qwen_stack.safety.action_policy import ActionVetter, ApprovalBook, load_policy, policy_from_dict
from qwen_stack.safety.config import ConfigError
from qwen_stack.safety.verdict import VerdictLevel
from qwen_stack.topics import (SKILL_DRIVE_DISTANCE, SKILL_GO_TO_POSE, SKILL_GRASP, SKILL_LOOK_AT, SKILL_RELEASE,
                               SKILL_ROTATE, SKILL_DESCRIBE_STATE)

# request fields of the skill services (test double of the rosidl introspection the node uses)
FIELDS = {
    "qwen_stack_interfaces/srv/DriveDistance": ["distance", "speed"],
    "qwen_stack_interfaces/srv/Rotate": ["angle", "speed"],
    "qwen_stack_interfaces/srv/GoToPose": ["x", "y", "theta", "use_theta", "max_speed"],
    "qwen_stack_interfaces/srv/Grasp": ["object_name"],
    "qwen_stack_interfaces/srv/Release": [],
    "qwen_stack_interfaces/srv/LookAt": ["pan"],
}


@pytest.fixture()
def vetter():
    return ActionVetter(load_policy(config_file("safety_policy.yaml"), FIELDS.get))


def test_shipped_policy_covers_every_actuating_skill_and_not_describe_state():
    pol = load_policy(config_file("safety_policy.yaml"), FIELDS.get)
    assert set(pol.services) == {SKILL_DRIVE_DISTANCE, SKILL_ROTATE, SKILL_GO_TO_POSE, SKILL_GRASP, SKILL_RELEASE,
                                 SKILL_LOOK_AT}
    assert SKILL_DESCRIBE_STATE not in pol.services


def test_in_range_is_allowed(vetter):
    r = vetter.vet(SKILL_DRIVE_DISTANCE, json.dumps({"distance": 1.0, "speed": 0.2}), 0.0, False)
    assert r.accepted and r.verdict.level == VerdictLevel.ALLOW and not r.needs_approval


@pytest.mark.parametrize("args, reason", [
    ({"distance": 5.0, "speed": 0.2}, "distance=5.0 above policy maximum 3.0"),
    ({"distance": 1.0, "speed": 0.0}, "speed=0.0 below policy minimum 0.05"),
    ({"distance": "far", "speed": 0.2}, "expected a number"),
    ({"distance": True, "speed": 0.2}, "expected a number"),
    ({"distance": 1.0}, "'speed' is required"),
    ({"distance": 1.0, "speed": 0.2, "turbo": 1}, "'turbo' is not allowed"),
])
def test_out_of_policy_arguments_are_rejected_with_reason(vetter, args, reason):
    r = vetter.vet(SKILL_DRIVE_DISTANCE, json.dumps(args), 0.0, False)
    assert not r.accepted and r.verdict.level == VerdictLevel.REJECT
    assert any(reason in s for s in r.verdict.reasons), r.verdict.reasons


def test_nan_argument_is_rejected(vetter):
    r = vetter.vet(SKILL_LOOK_AT, '{"pan": NaN}', 0.0, False)
    assert not r.accepted and "non-finite" in r.verdict.reasons[0]


def test_values_rule_checks_type(vetter):
    ok = {"x": 1.0, "y": 1.0, "theta": 0.0, "max_speed": 0.2}
    assert vetter.vet(SKILL_GO_TO_POSE, json.dumps({**ok, "use_theta": True}), 0, False).accepted
    assert not vetter.vet(SKILL_GO_TO_POSE, json.dumps({**ok, "use_theta": 1}), 0, False).accepted


def test_unlisted_service_bad_json_and_estop(vetter):
    assert "not in the safety policy" in vetter.vet("skills/self_destruct", "{}", 0, False).verdict.reasons[0]
    assert "not valid JSON" in vetter.vet(SKILL_ROTATE, "{angle: 1", 0, False).verdict.reasons[0]
    assert "JSON object" in vetter.vet(SKILL_ROTATE, "[1, 2]", 0, False).verdict.reasons[0]
    r = vetter.vet(SKILL_ROTATE, '{"angle": 1.0, "speed": 0.5}', 0, True)
    assert r.verdict.level == VerdictLevel.ESTOP and not r.accepted


def test_rate_limit_sliding_window(vetter):
    args = '{"angle": 0.5, "speed": 0.5}'
    for k in range(10):                       # policy: 10 calls per 10 s; a call counts when it passes vetting
        r = vetter.vet(SKILL_ROTATE, args, float(k), False)
        assert r.accepted
    r = vetter.vet(SKILL_ROTATE, args, 9.5, False)
    assert not r.accepted and "rate limit" in r.verdict.reasons[0]
    assert vetter.vet(SKILL_ROTATE, args, 10.0, False).accepted    # the call at t=0 left the window


def test_needs_approval_flag(vetter):
    r = vetter.vet(SKILL_RELEASE, "{}", 0.0, False)
    assert r.accepted and r.needs_approval


def test_approval_book_timeout_means_denied():
    book = ApprovalBook()
    req = book.open("skills/release", "{}", now=0.0, timeout=1.0)
    assert book.outcome(req.request_id, 0.5) is None
    assert book.outcome(req.request_id, 1.5) is False
    assert book.answer(req.request_id, True, "op", 1.5) == (False, f"approval request {req.request_id} has expired (denied)")
    req2 = book.open("skills/release", "{}", now=0.0, timeout=1.0)
    assert book.answer(req2.request_id, True, "op", 0.5) == (True, "approved")
    assert book.outcome(req2.request_id, 2.0) is True
    assert book.answer(req2.request_id, False, "op", 0.6)[0] is False        # answered once only
    assert book.answer("nope", True, "op", 0.0)[0] is False


def _bad(doc, fields=FIELDS.get) -> str:
    with pytest.raises(ConfigError) as exc:
        policy_from_dict(doc, fields)
    return str(exc.value)


GOOD = {"type": "qwen_stack_interfaces/srv/LookAt", "arguments": {"pan": {"min": -1, "max": 1}}}


@pytest.mark.parametrize("doc, msg", [
    ({"services": {"skills/look_at": {**GOOD, "type": "qwen_stack_interfaces/srv/Teleport"}}},
     "services.skills/look_at.type: unknown service type qwen_stack_interfaces/srv/Teleport"),
    ({"services": {"skills/look_at": {**GOOD, "type": "LookAt"}}}, "expected 'package/srv/Name'"),
    ({"services": {"skills/look_at": {**GOOD, "arguments": {"pan": {"min": 1, "max": -1}}}}}, "min 1 > max -1"),
    ({"services": {"skills/look_at": {**GOOD, "arguments": {"pan": {}}}}}, "give min/max, values or max_length"),
    ({"services": {"skills/look_at": {**GOOD, "arguments": {"tilt": {"min": 0, "max": 1}}}}},
     "arguments.tilt: not a request field"),
    ({"services": {"skills/look_at": {**GOOD, "arguments": {}}}}, "request fields without a rule: ['pan']"),
    ({"services": {"skills/look_at": {**GOOD, "rate_limit": {"max_calls": 0}}}}, "rate_limit.max_calls"),
    ({"services": {"skills/look_at": {**GOOD, "rate_limit": {"max_calls": 1, "period_s": -1}}}},
     "rate_limit.period_s"),
    ({"services": {"skills/look_at": {**GOOD, "needs_approval": "yes"}}}, "needs_approval: must be true or false"),
    ({"services": {"skills/look_at": {**GOOD, "colour": 1}}}, "unknown keys ['colour']"),
    ({"services": {"skills look": GOOD}}, "not a valid service name"),
    ({"services": []}, "'services' mapping"),
    ({}, "'services' mapping"),
])
def test_invalid_policies_are_refused(doc, msg):
    assert msg in _bad(doc)


def test_unreadable_policy_file(tmp_path):
    with pytest.raises(ConfigError, match="policy_file: cannot read"):
        load_policy(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("services: [")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_policy(tmp_path / "bad.yaml")
