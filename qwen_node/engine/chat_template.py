"""A checkpoint's own chat template (chat_template.jinja, chat_template.json or tokenizer_config.json),
rendered with jinja2 the way Hugging Face tokenizers render it.

A checkpoint folder that ships a template is prompted with that template, not with our built-in
Qwen3.5 format (chat.py): a fine-tune may change its template and must then see its own prompts.
Messages go through the same checks as the built-in format first (roles, no special tokens in text,
tool-call arguments decoded to objects), so a shipped template cannot be used to forge turns.
"""
from __future__ import annotations

import json
from pathlib import Path

from .chat import (ASSISTANT_TAGS, IMAGE_PLACEHOLDER, USER_TAGS, VIDEO_PLACEHOLDER, ChatFormatError,
                   check_messages, check_plain, check_tools, render_content, tool_call_parts)

# where a checkpoint keeps its template, in the order Hugging Face looks (a .jinja file wins)
TEMPLATE_FILES = ("chat_template.jinja", "chat_template.json", "tokenizer_config.json")


def find_chat_template(model_dir: str | Path) -> tuple[str, Path] | None:
    """The template source a checkpoint folder ships and the file it came from; None if it ships none."""
    d = Path(model_dir)
    for name in TEMPLATE_FILES:
        path = d / name
        if not path.is_file():
            continue
        if name.endswith(".jinja"):
            return path.read_text(encoding="utf-8"), path
        try:
            value = json.loads(path.read_text(encoding="utf-8")).get("chat_template")
        except (json.JSONDecodeError, AttributeError, UnicodeDecodeError) as exc:
            raise ChatFormatError(f"{path}: not a JSON object ({exc})") from exc
        if isinstance(value, list):     # named templates: [{"name": "default", "template": ...}, ...]
            value = next((t.get("template") for t in value if isinstance(t, dict) and t.get("name") == "default"),
                         None)
        if value is None:
            continue
        if not isinstance(value, str):
            raise ChatFormatError(f"{path}: field chat_template must be a string or a list of named templates")
        return value, path
    return None


def _prepared(messages: list[dict]) -> list[dict]:
    """Checked copies of the messages, tool-call arguments as objects (templates iterate them with |items)."""
    check_messages(messages)
    out = []
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        allowed = {"assistant": ASSISTANT_TAGS, "user": USER_TAGS}.get(m["role"], ())
        render_content(m.get("content"), where, allowed, is_system=m["role"] == "system")
        m = dict(m)
        if isinstance(m.get("reasoning_content"), str):
            check_plain(m["reasoning_content"], where + ".reasoning_content")
        if m.get("tool_calls"):
            calls = []
            for j, call in enumerate(m["tool_calls"]):
                name, args = tool_call_parts(call, f"{where}.tool_calls[{j}]")
                fn = {"name": name} if args is None else {"name": name, "arguments": args}
                calls.append({**call, "function": fn} if "function" in call else fn)
            m["tool_calls"] = calls
        out.append(m)
    return out


class ChatTemplate:
    """A compiled Jinja chat template; render() has render_chat's signature and result."""

    def __init__(self, source: str, origin: str = "chat template"):
        import jinja2
        from jinja2.ext import loopcontrols
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        def raise_exception(message):
            raise ChatFormatError(f"{origin}: {message}")

        # the options Hugging Face uses: blocks eat their newline and leading spaces; tojson keeps non-ASCII
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
        env.filters["tojson"] = lambda x, indent=None, separators=None, sort_keys=False: json.dumps(
            x, ensure_ascii=False, indent=indent, separators=separators, sort_keys=sort_keys)
        env.globals["raise_exception"] = raise_exception
        self.origin = origin
        try:
            self._template = env.from_string(source)
        except jinja2.TemplateSyntaxError as exc:
            raise ChatFormatError(f"{origin}: line {exc.lineno}: {exc.message}") from exc

    @classmethod
    def from_checkpoint(cls, model_dir: str | Path) -> "ChatTemplate | None":
        found = find_chat_template(model_dir)
        return None if found is None else cls(found[0], str(found[1]))

    def render(self, messages: list[dict], tools: list[dict] | None = None, add_generation_prompt: bool = True,
               enable_thinking: bool = True, add_vision_id: bool = False) -> tuple[str, int, int]:
        import jinja2

        tools = check_tools(tools)
        try:
            text = self._template.render(messages=_prepared(messages), tools=list(tools) if tools else None,
                                         add_generation_prompt=add_generation_prompt,
                                         enable_thinking=enable_thinking, add_vision_id=add_vision_id)
        except jinja2.TemplateError as exc:
            raise ChatFormatError(f"{self.origin}: {exc}") from exc
        except (TypeError, AttributeError) as exc:     # a template that does not fit the messages
            raise ChatFormatError(f"{self.origin}: cannot render these messages ({exc})") from exc
        return text, text.count(IMAGE_PLACEHOLDER), text.count(VIDEO_PLACEHOLDER)
