"""The model's tool-call text (Qwen3.5's XML form) and the tool registry as qwen_node builds it, for the agent tests."""
from __future__ import annotations

import yaml

from qwen_stack.paths import config_file
from qwen_stack.qwen_node.agent.tool_registry import ToolRegistry

from .srv_files import srv_file_request_fields


def call(name: str, **params) -> str:
    """One tool call as the model writes it."""
    body = "".join(f"<parameter={k}>\n{v}\n</parameter>\n" for k, v in params.items())
    return f"<tool_call>\n<function={name}>\n{body}</function>\n</tool_call>"


def planner_registry() -> ToolRegistry:
    """As qwen_node builds it: the tools with the safety policy's ranges (their only source)."""
    return ToolRegistry.from_dict(yaml.safe_load(config_file("tools.yaml").read_text()), srv_file_request_fields,
                                  yaml.safe_load(config_file("safety_policy.yaml").read_text()))
