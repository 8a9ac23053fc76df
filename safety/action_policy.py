"""Vetting of service-style actuation (robot skills, gripper) against the policy YAML.

Policy file (config/safety_policy.yaml):

    services:
      skills/drive_distance:                       # service name (relative, as in qwen_stack/topics.py)
        type: qwen_stack_interfaces/srv/DriveDistance
        needs_approval: false
        rate_limit: {max_calls: 5, period_s: 10.0}  # at most max_calls accepted per sliding period
        arguments:                                  # every request field the caller may set
          distance: {min: -2.0, max: 2.0}           # numbers: inclusive range
          speed: {min: 0.05, max: 0.5}
          object_name: {values: ["", "cube"]}      # strings/bools: allowed values
          label: {max_length: 64}                   # strings: any value up to a length

Anything not listed is rejected; a listed argument is required unless `required: false`.

Arguments are strict JSON objects: at most MAX_ARGUMENTS_CHARS characters, no repeated key (the operator
would read one value and the robot get another), integers of at most MAX_INTEGER_DIGITS digits. Vetting
never raises: every failure is a REJECT with its reason.
"""
from __future__ import annotations

import json
import math
import re
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import yaml

from qwen_stack.safety.config import ConfigError
from qwen_stack.safety.verdict import Verdict, VerdictLevel, bounded, num

MAX_ARGUMENTS_CHARS = 16384      # arguments_json longer than this is refused before parsing
MAX_INTEGER_DIGITS = 18          # larger integers are refused while parsing (no request field needs more)


def _show(value) -> str:
    """An argument value in a reason, bounded (floats as written, huge integers by size)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return repr(value) if isinstance(value, float) or abs(value) < 10 ** 15 else num(value)
    return bounded(repr(value), 80)


class _ArgumentsError(ValueError):
    pass


def _no_repeated_keys(pairs):
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        dup = sorted({k for k in keys if keys.count(k) > 1})
        raise _ArgumentsError(f"repeated key(s) {bounded(repr(dup), 80)}")
    return dict(pairs)


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise _ArgumentsError(f"integer with {len(text.lstrip('-'))} digits (at most {MAX_INTEGER_DIGITS})")
    return int(text)


def parse_arguments(arguments_json) -> tuple[dict | None, str | None]:
    """(arguments, None) or (None, why they are refused). Never raises."""
    if not isinstance(arguments_json, str):
        return None, f"arguments must be a JSON object string, got {type(arguments_json).__name__}"
    if len(arguments_json) > MAX_ARGUMENTS_CHARS:
        return None, f"arguments_json longer than {MAX_ARGUMENTS_CHARS} characters ({len(arguments_json)})"
    if not arguments_json.strip():
        return {}, None
    try:
        args = json.loads(arguments_json, object_pairs_hook=_no_repeated_keys, parse_int=_bounded_int)
    except _ArgumentsError as exc:
        return None, f"arguments refused: {exc}"
    except RecursionError:
        return None, "arguments nested too deeply"
    except ValueError as exc:                        # JSONDecodeError and int conversion limits
        return None, f"arguments are not valid JSON: {bounded(str(exc), 120)}"
    if not isinstance(args, dict):
        return None, "arguments must be a JSON object"
    return args, None

_TYPE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*/srv/[A-Z][A-Za-z0-9]*$")
_SERVICE_RE = re.compile(r"^[A-Za-z_~/][A-Za-z0-9_/]*$")


@dataclass(frozen=True)
class ArgumentRule:
    name: str
    minimum: float | None = None
    maximum: float | None = None
    values: tuple | None = None
    max_length: int | None = None
    required: bool = True

    def check(self, value) -> str | None:
        """None when `value` is allowed, else the reason."""
        if self.minimum is not None or self.maximum is not None:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return f"argument {self.name}: expected a number, got {_show(value)}"
            if isinstance(value, float) and not math.isfinite(value):   # (math.isfinite overflows on huge ints)
                return f"argument {self.name}: non-finite value {value}"
            if self.minimum is not None and value < self.minimum:
                return f"argument {self.name}={_show(value)} below policy minimum {self.minimum}"
            if self.maximum is not None and value > self.maximum:
                return f"argument {self.name}={_show(value)} above policy maximum {self.maximum}"
        if self.values is not None and not any(type(v) is type(value) and v == value for v in self.values):
            return f"argument {self.name}={_show(value)} not among allowed values {list(self.values)}"
        if self.max_length is not None:
            if not isinstance(value, str):
                return f"argument {self.name}: expected a string, got {_show(value)}"
            if len(value) > self.max_length:
                return f"argument {self.name}: longer than {self.max_length} characters"
        return None


@dataclass(frozen=True)
class ServicePolicy:
    service: str
    type: str
    arguments: dict                     # name -> ArgumentRule
    needs_approval: bool = False
    max_calls: int = 0                  # 0: no rate limit
    period_s: float = 1.0


@dataclass
class ActionPolicy:
    services: dict = field(default_factory=dict)   # service name -> ServicePolicy


def _rule(service: str, name: str, spec) -> tuple[ArgumentRule | None, list[str]]:
    where = f"services.{service}.arguments.{name}"
    if not isinstance(spec, dict):
        return None, [f"{where}: expected a mapping with min/max, values or max_length, got {spec!r}"]
    errors = []
    unknown = set(spec) - {"min", "max", "values", "max_length", "required"}
    if unknown:
        errors.append(f"{where}: unknown keys {sorted(unknown)}")
    lo, hi = spec.get("min"), spec.get("max")
    for key, v in (("min", lo), ("max", hi)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)):
            errors.append(f"{where}.{key}: must be a finite number, got {v!r}")
    if not errors and lo is not None and hi is not None and lo > hi:
        errors.append(f"{where}: min {lo} > max {hi}")
    values = spec.get("values")
    if values is not None and (not isinstance(values, list) or not values):
        errors.append(f"{where}.values: must be a non-empty list, got {values!r}")
    ml = spec.get("max_length")
    if ml is not None and (isinstance(ml, bool) or not isinstance(ml, int) or ml < 0):
        errors.append(f"{where}.max_length: must be an integer >= 0, got {ml!r}")
    req = spec.get("required", True)
    if not isinstance(req, bool):
        errors.append(f"{where}.required: must be true or false, got {req!r}")
    if lo is None and hi is None and values is None and ml is None:
        errors.append(f"{where}: give min/max, values or max_length (an argument without a bound is not vetted)")
    if errors:
        return None, errors
    return ArgumentRule(name, lo, hi, tuple(values) if values is not None else None, ml, req), []


def policy_from_dict(doc, type_fields: Callable[[str], list[str] | None] | None = None) -> ActionPolicy:
    """Validate a policy document. `type_fields(type)` returns the request field names of a service type,
    or None when the type is unknown (the node passes a rosidl resolver; tests may pass a table).
    Raises ConfigError naming each offending entry."""
    errors: list[str] = []
    if not isinstance(doc, dict) or not isinstance(doc.get("services"), dict):
        raise ConfigError("policy: top level must be a mapping with a 'services' mapping")
    unknown_top = set(doc) - {"services"}
    if unknown_top:
        errors.append(f"policy: unknown top-level keys {sorted(unknown_top)}")
    services = {}
    for service, spec in doc["services"].items():
        where = f"services.{service}"
        if not isinstance(service, str) or not _SERVICE_RE.match(service):
            errors.append(f"{where}: not a valid service name")
            continue
        if not isinstance(spec, dict):
            errors.append(f"{where}: expected a mapping")
            continue
        unknown = set(spec) - {"type", "arguments", "needs_approval", "rate_limit"}
        if unknown:
            errors.append(f"{where}: unknown keys {sorted(unknown)}")
        stype = spec.get("type")
        fields = None
        if not isinstance(stype, str) or not _TYPE_RE.match(stype):
            errors.append(f"{where}.type: expected 'package/srv/Name', got {stype!r}")
        elif type_fields is not None:
            fields = type_fields(stype)
            if fields is None:
                errors.append(f"{where}.type: unknown service type {stype}")
        needs_approval = spec.get("needs_approval", False)
        if not isinstance(needs_approval, bool):
            errors.append(f"{where}.needs_approval: must be true or false, got {needs_approval!r}")
        max_calls, period = 0, 1.0
        rl = spec.get("rate_limit")
        if rl is not None:
            if not isinstance(rl, dict) or set(rl) - {"max_calls", "period_s"}:
                errors.append(f"{where}.rate_limit: expected {{max_calls: int, period_s: seconds}}, got {rl!r}")
            else:
                max_calls, period = rl.get("max_calls", 0), rl.get("period_s", 1.0)
                if isinstance(max_calls, bool) or not isinstance(max_calls, int) or max_calls < 1:
                    errors.append(f"{where}.rate_limit.max_calls: must be an integer >= 1, got {max_calls!r}")
                if isinstance(period, bool) or not isinstance(period, (int, float)) or not (
                        math.isfinite(period) and period > 0):
                    errors.append(f"{where}.rate_limit.period_s: must be > 0, got {period!r}")
        args = spec.get("arguments", {}) or {}
        rules = {}
        if not isinstance(args, dict):
            errors.append(f"{where}.arguments: expected a mapping")
            args = {}
        for name, aspec in args.items():
            rule, errs = _rule(service, name, aspec)
            errors += errs
            if rule:
                rules[name] = rule
            if fields is not None and name not in fields:
                errors.append(f"{where}.arguments.{name}: not a request field of {stype} (fields: {fields})")
        if fields is not None:
            missing = [f for f in fields if f not in args]
            if missing:
                errors.append(f"{where}.arguments: request fields without a rule: {missing} "
                              "(every field the caller can set must be bounded)")
        services[service] = ServicePolicy(service, stype if isinstance(stype, str) else "", rules,
                                          bool(needs_approval), int(max_calls) if isinstance(max_calls, int) else 0,
                                          float(period) if isinstance(period, (int, float)) else 1.0)
    if errors:
        raise ConfigError("invalid safety policy:\n  " + "\n  ".join(errors))
    return ActionPolicy(services)


def load_policy(path: str | Path, type_fields=None) -> ActionPolicy:
    try:
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f)
    except OSError as exc:
        raise ConfigError(f"policy_file: cannot read {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"policy_file: {path} is not valid YAML: {exc}") from exc
    return policy_from_dict(doc, type_fields)


@dataclass(frozen=True)
class ActionVerdict:
    verdict: Verdict
    needs_approval: bool = False
    arguments: dict | None = None       # parsed arguments when accepted
    policy: ServicePolicy | None = None

    @property
    def accepted(self) -> bool:
        return self.verdict.level < VerdictLevel.STOP


class ActionVetter:
    """Decides on one CallTool request. The rate limit counts every request that passes the policy, at that
    moment: before any approval wait and whatever the operator answers, so that concurrent calls cannot all
    pass a check made before any of them was counted, and denied retries cannot raise unlimited prompts.
    `now` is a monotonic clock (a jump of the ROS clock must not empty or freeze the window)."""

    def __init__(self, policy: ActionPolicy) -> None:
        self.policy = policy
        self._calls: dict[str, deque] = {name: deque() for name in policy.services}

    def vet(self, service: str, arguments_json: str, now: float, estop_latched: bool) -> ActionVerdict:
        if estop_latched:
            return ActionVerdict(Verdict(VerdictLevel.ESTOP, ("e-stop latched: every action is refused",)))
        pol = self.policy.services.get(service) if isinstance(service, str) else None
        if pol is None:
            return ActionVerdict(Verdict(VerdictLevel.REJECT, (
                f"service {bounded(repr(service), 120)} is not in the safety policy",)))
        args, err = parse_arguments(arguments_json)
        if err is not None:
            return ActionVerdict(Verdict(VerdictLevel.REJECT, (err,)))
        reasons = []
        for name in args:
            if name not in pol.arguments:
                reasons.append(f"argument {name!r} is not allowed by the policy of {service}")
        for name, rule in pol.arguments.items():
            if name not in args:
                if rule.required:
                    reasons.append(f"argument {name!r} is required by the policy of {service}")
                continue
            err = rule.check(args[name])
            if err:
                reasons.append(err)
        if reasons:
            return ActionVerdict(Verdict(VerdictLevel.REJECT, tuple(reasons)))
        if pol.max_calls:
            q = self._calls[service]
            while q and now - q[0] >= pol.period_s:
                q.popleft()
            if len(q) >= pol.max_calls:
                return ActionVerdict(Verdict(VerdictLevel.REJECT, (
                    f"rate limit: {service} allows {pol.max_calls} calls per {pol.period_s} s",)))
            q.append(now)
        return ActionVerdict(Verdict(), pol.needs_approval, args, pol)


@dataclass
class PendingApproval:
    request_id: str
    service: str
    arguments_json: str
    deadline: float
    decision: bool | None = None
    operator: str = ""


class ApprovalBook:
    """Pending operator approvals. A request not decided by its deadline is denied."""

    def __init__(self) -> None:
        self.pending: dict[str, PendingApproval] = {}

    def open(self, service: str, arguments_json: str, now: float, timeout: float) -> PendingApproval:
        req = PendingApproval(uuid.uuid4().hex, service, arguments_json, now + timeout)
        self.pending[req.request_id] = req
        return req

    def answer(self, request_id: str, approved: bool, operator: str, now: float) -> tuple[bool, str]:
        """`approved` must be the bool True or False (the string "false" is truthy: refused, not approved)."""
        if approved is not True and approved is not False:
            return False, f"approved must be true or false, got {bounded(repr(approved), 40)}"
        req = self.pending.get(request_id) if isinstance(request_id, str) else None
        if req is None:
            return False, f"no pending approval request {bounded(repr(request_id), 80)}"
        if now > req.deadline:
            return False, f"approval request {request_id} has expired (denied)"
        if req.decision is not None:
            return False, f"approval request {request_id} was already answered"
        req.decision, req.operator = approved, operator
        return True, "approved" if approved else "denied"

    def outcome(self, request_id: str, now: float) -> bool | None:
        """True approved, False denied (or expired), None still waiting."""
        req = self.pending.get(request_id)
        if req is None:
            return False
        if req.decision is not None:
            return req.decision
        return False if now > req.deadline else None

    def close(self, request_id: str) -> None:
        self.pending.pop(request_id, None)
