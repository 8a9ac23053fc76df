"""Tool registry: which tools the model may call and how each becomes a ROS service request.

Loaded from config/tools.yaml. Each tool is one of:
- kind `service`: one ROS service; the model sets `model_fields` of its request, `fixed_fields`
  fill the rest. Actuating tools are always called through the safety supervisor's CallTool
  proxy, the others directly (there is no per-tool route to get wrong). A tool whose service
  needs the operator's approval (safety policy) waits `approval_wait_s` longer than its timeout_s.
- kind `grounding`: the model names a point (0-1000 image coordinates) in the current camera
  frame; the planner turns it into an odom-frame goal (see grounding.py) for `target_tool`.
- kind `object_goal`: the model names an object; an object locator gives its position and
  the planner sends `target_tool` to a stand-off pose in front of it.
- kind `perception`: no arguments, no service; the planner answers from perception's object
  memory (what is in view now and what is remembered). Never actuating.
A service tool with `adds_object_memory: true` gets that memory added to its result ("objects").

The JSON schema the model sees is built from the ROS request type itself
(`get_fields_and_field_types`), with the ranges, allowed values and lengths of the safety policy
(config/safety_policy.yaml), the one place a tool's limits are written: the model is shown
exactly what the supervisor will accept.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

from qwen_stack.ros_messages import FLOAT_TYPES, INT_TYPES, InterfaceUnavailable, service_class

KINDS = ("service", "grounding", "object_goal", "perception")

# ROS IDL field types -> JSON schema fragments


class RegistryError(ValueError):
    """A tools.yaml entry that cannot be used; the message names the tool and the key."""


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    kind: str                       # "service" | "grounding" | "object_goal"
    actuating: bool                 # moves the robot or changes the world: called through the supervisor's proxy
    service: str = ""               # ROS service (kind service); relative name
    interface: str = ""             # e.g. qwen_stack_interfaces/srv/DriveDistance
    model_fields: tuple[str, ...] = ()
    fixed_fields: Mapping[str, Any] = field(default_factory=dict)
    timeout_s: float = 30.0
    target_tool: str = ""           # grounding / object_goal: the service tool they end in
    parameters: Mapping[str, Any] = field(default_factory=dict)  # JSON schema for the model
    adds_object_memory: bool = False  # service tools: perception's memory is added to the result as "objects"
    approval_wait_s: float = 0.0    # operator's time to approve (safety policy needs_approval), else 0

    @property
    def call_timeout_s(self) -> float:
        """The caller's whole deadline: the approval wait and the service. It travels in CallTool.timeout_s,
        and the supervisor neither waits for an approval nor forwards the call past it."""
        return self.timeout_s + self.approval_wait_s


FieldResolver = Callable[[str], Mapping[str, str]]


def ros_request_fields(interface: str) -> Mapping[str, str]:
    """Request field name -> ROS type of a service type 'pkg/srv/Name' (imports it)."""
    try:
        return service_class(interface).Request.get_fields_and_field_types()
    except InterfaceUnavailable as exc:
        raise RegistryError(str(exc)) from None


def json_type_of_ros_field(ros_type: str) -> dict[str, Any]:
    if ros_type in FLOAT_TYPES:
        return {"type": "number"}
    if ros_type in INT_TYPES:
        return {"type": "integer", **({"minimum": 0} if ros_type.startswith("uint") or ros_type in ("byte", "octet") else {})}
    if ros_type == "boolean":
        return {"type": "boolean"}
    if ros_type.startswith("string") or ros_type.startswith("wstring"):
        return {"type": "string"}
    if ros_type.startswith("sequence<") or ros_type.endswith("]"):
        return {"type": "array"}
    return {"type": "object"}


@dataclass(frozen=True)
class PolicyRule:
    """What the safety policy allows for one request field (see qwen_stack.safety.action_policy)."""
    range: tuple[float, float] | None = None
    values: tuple | None = None
    max_length: int | None = None
    required: bool = True


@dataclass(frozen=True)
class PolicyView:
    """The parts of config/safety_policy.yaml the planner needs: per actuating service, its
    interface type and argument rules. The supervisor enforces the policy; the planner only
    shows the model the same limits so that it does not propose calls that will be rejected."""
    types: Mapping[str, str]                        # service -> pkg/srv/Name
    rules: Mapping[str, Mapping[str, PolicyRule]]   # service -> field -> rule
    needs_approval: frozenset[str] = frozenset()


def policy_view(doc: Mapping[str, Any] | None) -> PolicyView | None:
    """Validate the policy document with the supervisor's own loader and keep what we need."""
    if doc is None:
        return None
    from qwen_stack.safety.action_policy import policy_from_dict  # the supervisor's parser: one truth

    policy = policy_from_dict(doc)
    types = {s: p.type for s, p in policy.services.items()}
    rules = {s: {n: PolicyRule(None if r.minimum is None or r.maximum is None else (float(r.minimum), float(r.maximum)),
                               r.values, r.max_length, r.required)
                 for n, r in p.arguments.items()} for s, p in policy.services.items()}
    return PolicyView(types, rules, frozenset(s for s, p in policy.services.items() if p.needs_approval))


def _req(entry: Mapping[str, Any], key: str, where: str, kind: type | tuple[type, ...]) -> Any:
    if key not in entry:
        raise RegistryError(f"{where}: missing key {key!r}")
    value = entry[key]
    if not isinstance(value, kind):
        raise RegistryError(f"{where}: {key!r} must be {getattr(kind, '__name__', kind)}, got {value!r}")
    return value


# tools.yaml approval_wait_s when absent (the supervisor's approval_timeout in config/safety.yaml caps the wait)
DEFAULT_APPROVAL_WAIT_S = 30.0

_ENTRY_KEYS = {"name", "description", "kind", "actuating", "service", "interface", "model_fields",
               "fixed_fields", "field_descriptions", "timeout_s", "target_tool", "adds_object_memory"}


class ToolRegistry:
    def __init__(self, tools: list[ToolSpec], supervisor_proxy: str):
        self.tools = {t.name: t for t in tools}
        self.supervisor_proxy = supervisor_proxy

    def __contains__(self, name: str) -> bool:
        return name in self.tools

    def __getitem__(self, name: str) -> ToolSpec:
        return self.tools[name]

    def schemas(self) -> dict[str, Mapping[str, Any]]:
        """tool name -> parameters schema (what the output parser converts values by)."""
        return {n: t.parameters for n, t in self.tools.items()}

    def function_specs(self) -> list[dict[str, Any]]:
        """OpenAI / Qwen chat-template tool list: [{"type": "function", "function": {...}}]."""
        return [{"type": "function", "function": {"name": t.name, "description": t.description,
                                                  "parameters": dict(t.parameters)}}
                for t in self.tools.values()]

    # ---------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any], resolver: FieldResolver = ros_request_fields,
                  safety_policy: Mapping[str, Any] | None = None) -> "ToolRegistry":
        if not isinstance(data, Mapping):
            raise RegistryError("tools.yaml must be a mapping with keys supervisor_proxy and tools")
        proxy = _req(data, "supervisor_proxy", "tools.yaml", str)
        entries = _req(data, "tools", "tools.yaml", list)
        approval_wait = data.get("approval_wait_s", DEFAULT_APPROVAL_WAIT_S)
        if isinstance(approval_wait, bool) or not isinstance(approval_wait, (int, float)) or not (
                math.isfinite(approval_wait) and approval_wait > 0):
            raise RegistryError(f"tools.yaml: approval_wait_s must be a number of seconds > 0, got {approval_wait!r}")
        try:
            policy = policy_view(safety_policy)
        except ValueError as exc:
            raise RegistryError(f"safety policy: {exc}") from exc
        policy_actuating = set(policy.types) if policy else set()
        specs: list[ToolSpec] = []
        seen: set[str] = set()
        for i, entry in enumerate(entries):
            where = f"tools.yaml tools[{i}]"
            if not isinstance(entry, Mapping):
                raise RegistryError(f"{where}: must be a mapping")
            name = _req(entry, "name", where, str)
            where = f"tools.yaml tool {name!r}"
            if not name.isidentifier():
                raise RegistryError(f"{where}: name must be an identifier")
            if name in seen:
                raise RegistryError(f"{where}: defined twice")
            seen.add(name)
            unknown = set(entry) - _ENTRY_KEYS
            if unknown:
                raise RegistryError(f"{where}: unknown key(s) {sorted(unknown)}")
            kind = entry.get("kind", "service")
            if kind not in KINDS:
                raise RegistryError(f"{where}: kind must be one of {KINDS}, got {kind!r}")
            actuating = _req(entry, "actuating", where, bool)
            timeout = float(entry.get("timeout_s", 30.0))
            if not (math.isfinite(timeout) and timeout > 0):
                raise RegistryError(f"{where}: timeout_s must be > 0, got {timeout}")
            descriptions = entry.get("field_descriptions", {}) or {}
            common = dict(name=name, description=_req(entry, "description", where, str).strip(), kind=kind,
                          actuating=actuating, timeout_s=timeout)
            adds_memory = entry.get("adds_object_memory", False)
            if not isinstance(adds_memory, bool) or (adds_memory and kind != "service"):
                raise RegistryError(f"{where}: adds_object_memory must be true or false, and only on a service tool")
            if kind == "perception":
                if actuating:
                    raise RegistryError(f"{where}: a perception tool only reads the memory: actuating must be false")
                specs.append(ToolSpec(**common, parameters={"type": "object", "properties": {}, "required": []}))
                continue
            if kind == "service":
                common["adds_object_memory"] = adds_memory
                service = _req(entry, "service", where, str)
                if actuating and policy is not None and service in policy.needs_approval:
                    common["approval_wait_s"] = float(approval_wait)
                if not actuating and service in policy_actuating:
                    raise RegistryError(f"{where}: {service!r} is actuating in the safety policy but the "
                                        f"tool says actuating: false")
                interface = _req(entry, "interface", where, str)
                if policy is not None and actuating:
                    if service not in policy.types:
                        raise RegistryError(f"{where}: actuating service {service!r} is not in the safety policy; "
                                            f"the supervisor would reject every call")
                    if policy.types[service] != interface:
                        raise RegistryError(f"{where}: interface {interface} differs from the safety policy's "
                                            f"{policy.types[service]} for {service!r}")
                fields = dict(resolver(interface))
                rules = policy.rules.get(service, {}) if policy is not None else {}
                model_fields = tuple(_req(entry, "model_fields", where, list))
                fixed = dict(entry.get("fixed_fields", {}) or {})
                for f in list(model_fields) + list(fixed):
                    if f not in fields:
                        raise RegistryError(f"{where}: {interface} has no request field {f!r}; it has {sorted(fields)}")
                overlap = set(model_fields) & set(fixed)
                if overlap:
                    raise RegistryError(f"{where}: field(s) {sorted(overlap)} both model_fields and fixed_fields")
                props: dict[str, Any] = {}
                for f in model_fields:
                    prop = json_type_of_ros_field(fields[f])
                    rule = rules.get(f)
                    rng = rule.range if rule else None
                    if rng is not None:
                        if prop["type"] not in ("number", "integer"):
                            raise RegistryError(f"{where}: the safety policy gives a range for non-numeric field {f!r}")
                        prop["minimum"], prop["maximum"] = rng
                    if rule is not None and rule.values is not None:
                        prop["enum"] = list(rule.values)
                    if rule is not None and rule.max_length is not None:
                        prop["maxLength"] = rule.max_length
                    if f in descriptions:
                        prop["description"] = str(descriptions[f])
                    props[f] = prop
                params = {"type": "object", "properties": props, "required": list(model_fields)}
                specs.append(ToolSpec(**common, service=service, interface=interface, model_fields=model_fields,
                                      fixed_fields=fixed, parameters=params))
            else:
                target = _req(entry, "target_tool", where, str)
                if kind == "grounding":
                    params = {"type": "object", "properties": {
                        "x": {"type": "number", "minimum": 0, "maximum": 1000,
                              "description": descriptions.get("x", "horizontal image coordinate, 0 = left edge, 1000 = right edge")},
                        "y": {"type": "number", "minimum": 0, "maximum": 1000,
                              "description": descriptions.get("y", "vertical image coordinate, 0 = top, 1000 = bottom")},
                    }, "required": ["x", "y"]}
                else:
                    params = {"type": "object", "properties": {
                        "object_name": {"type": "string",
                                        "description": descriptions.get("object_name", "name of the object or area")},
                    }, "required": ["object_name"]}
                specs.append(ToolSpec(**common, target_tool=target, parameters=params))
        by_name = {s.name: s for s in specs}
        for s in specs:
            if s.kind in ("grounding", "object_goal"):
                t = by_name.get(s.target_tool)
                if t is None or t.kind != "service" or not {"x", "y"} <= set(t.model_fields) | set(t.fixed_fields):
                    raise RegistryError(f"tools.yaml tool {s.name!r}: target_tool {s.target_tool!r} must be a "
                                        f"service tool with x and y fields (a go-to-pose skill)")
                if t.actuating and not s.actuating:
                    raise RegistryError(f"tools.yaml tool {s.name!r}: ends in actuating {t.name!r}, so it must be "
                                        f"actuating: true")
        return cls(specs, proxy)

    @classmethod
    def load(cls, path: str | Path, resolver: FieldResolver = ros_request_fields,
             safety_policy_path: str | Path | None = None) -> "ToolRegistry":
        """safety_policy_path None: no policy (tests of the registry alone); the node always gives one."""
        with open(path) as f:
            data = yaml.safe_load(f)
        policy = None
        if safety_policy_path is not None:
            with open(safety_policy_path) as f:
                policy = yaml.safe_load(f)
        return cls.from_dict(data, resolver, policy)

