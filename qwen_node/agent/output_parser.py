"""Streaming-safe parser of Qwen model output: thinking, text and tool calls.

Formats understood (the model's whole turn, after the prompt):

    <think>
    free text, may contain tag-like text such as <tool_call>
    </think>
    answer text
    <tool_call>
    <function=drive_distance>
    <parameter=distance>
    1.5
    </parameter>
    </function>
    </tool_call>

which is Qwen3.5's (and Qwen3-Coder's) tool-call format, and the JSON form older Qwen
models emit:

    <tool_call>
    {"name": "drive_distance", "arguments": {"distance": 1.5}}
    </tool_call>

Design: `OutputStreamParser.feed(chunk)` returns events as soon as they are certain; a
suffix that could be the start of a tag is held back, so the concatenated thinking and
text and the list of calls/errors do not depend on where the stream was split. A tool-call
block is parsed only once its `</tool_call>` has arrived, by the pure function
`parse_tool_call_block`, which converts values by the tool's JSON schema. Anything
malformed becomes a `ToolCallError` (never a `ParsedToolCall`): the planner answers it with
an error tool response and executes nothing from that turn.
"""
from __future__ import annotations

import ast
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Union

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"

# Upper bound on one tool-call block; a model that never closes its block gets an error
# rather than an ever-growing buffer.
MAX_TOOL_CALL_CHARS = 16_000


@dataclass(frozen=True)
class ThinkingDelta:
    text: str


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class ParsedToolCall:
    """A well-formed call to a known tool, arguments converted and checked by its schema."""
    name: str
    arguments: dict[str, Any]
    raw: str  # the block as the model wrote it (between <tool_call> and </tool_call>)


@dataclass(frozen=True)
class ToolCallError:
    """Output that looked like (or should have been) a tool call and is not a valid one."""
    message: str  # for the model: what was wrong
    raw: str
    # the model's text for this error that no TextDelta carries (the whole <tool_call> block);
    # empty for stray markup, which stays in the text
    unshown_text: str = ""


ParserEvent = Union[ThinkingDelta, TextDelta, ParsedToolCall, ToolCallError]


@dataclass
class ParsedTurn:
    """A whole model turn, the sum of the parser's events."""
    thinking: str = ""
    text: str = ""
    calls: list[ParsedToolCall] = field(default_factory=list)
    errors: list[ToolCallError] = field(default_factory=list)

    def add(self, event: ParserEvent) -> None:
        if isinstance(event, ThinkingDelta):
            self.thinking += event.text
        elif isinstance(event, TextDelta):
            self.text += event.text
        elif isinstance(event, ParsedToolCall):
            self.calls.append(event)
        else:
            self.errors.append(event)

    @property
    def actions(self) -> list[ParsedToolCall]:
        """The calls to execute: none at all when any part of the turn was malformed."""
        return [] if self.errors else list(self.calls)


# ----------------------------------------------------------------------------------------
# Value conversion by JSON schema (pure)
# ----------------------------------------------------------------------------------------

class SchemaError(ValueError):
    """An argument that does not fit its tool's schema; the message is meant for the model."""


def _parse_structured(text: str) -> Any:
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        pass
    try:
        return ast.literal_eval(text)  # Python-style literals ('a', True, None) some models write
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise SchemaError(f"not valid JSON: {text[:80]!r}") from None


def _check_number_range(name: str, value: float, schema: Mapping[str, Any]) -> None:
    lo, hi = schema.get("minimum"), schema.get("maximum")
    if lo is not None and value < lo:
        raise SchemaError(f"parameter {name!r}={value} is below its minimum {lo}")
    if hi is not None and value > hi:
        raise SchemaError(f"parameter {name!r}={value} is above its maximum {hi}")


def convert_value(name: str, value: Any, schema: Mapping[str, Any], from_text: bool) -> Any:
    """Convert one argument to the type its schema names; raise SchemaError when it can't.

    from_text: the value is the raw text of an XML-form <parameter> (always a string there).
    """
    kind = schema.get("type", "string")
    if isinstance(kind, list):  # e.g. ["number", "null"] from other clients' schemas
        kind = next((k for k in kind if k != "null"), "string")
    if from_text and kind != "string":
        value = value.strip()
    if kind == "string":
        if not isinstance(value, str):
            raise SchemaError(f"parameter {name!r} must be a string, got {type(value).__name__}")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            raise SchemaError(f"parameter {name!r} is longer than {schema['maxLength']} characters")
        result: Any = value
    elif kind == "boolean":
        if isinstance(value, str) and value.lower() in ("true", "false"):
            result = value.lower() == "true"
        elif isinstance(value, bool):
            result = value
        else:
            raise SchemaError(f"parameter {name!r} must be true or false, got {str(value)[:40]!r}")
    elif kind in ("number", "integer"):
        if isinstance(value, str):
            try:
                value = float(value) if kind == "number" or not re.fullmatch(r"[+-]?\d+", value) else int(value)
            except ValueError:
                raise SchemaError(f"parameter {name!r} must be a {kind}, got {value[:40]!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SchemaError(f"parameter {name!r} must be a {kind}, got {type(value).__name__}")
        if not math.isfinite(value):
            raise SchemaError(f"parameter {name!r} must be finite, got {value}")
        if kind == "integer":
            if float(value) != int(value):
                raise SchemaError(f"parameter {name!r} must be an integer, got {value}")
            result = int(value)
        else:
            result = float(value)
        _check_number_range(name, result, schema)
    elif kind in ("object", "array"):
        if isinstance(value, str):
            value = _parse_structured(value)
        want = dict if kind == "object" else list
        if not isinstance(value, want):
            raise SchemaError(f"parameter {name!r} must be a JSON {kind}")
        result = value
    else:
        raise SchemaError(f"parameter {name!r} has an unsupported schema type {kind!r}")
    if "enum" in schema and result not in schema["enum"]:
        raise SchemaError(f"parameter {name!r} must be one of {schema['enum']}, got {result!r}")
    return result


def convert_arguments(tool: str, raw_args: Mapping[str, Any], schema: Mapping[str, Any],
                      from_text: bool) -> dict[str, Any]:
    """Convert and check all arguments of one call against the tool's parameters schema."""
    props: Mapping[str, Any] = schema.get("properties", {})
    unknown = sorted(set(raw_args) - set(props))
    if unknown:
        raise SchemaError(f"tool {tool!r} has no parameter(s) {unknown}; it takes {sorted(props)}")
    missing = [p for p in schema.get("required", []) if p not in raw_args]
    if missing:
        raise SchemaError(f"tool {tool!r} is missing required parameter(s) {missing}")
    return {k: convert_value(k, v, props[k], from_text) for k, v in raw_args.items()}


# ----------------------------------------------------------------------------------------
# One tool-call block (pure)
# ----------------------------------------------------------------------------------------

_STRAY_MARKUP = re.compile(r"</tool_call>|<function=|</function>|<parameter=")
_FUNCTION_OPEN = re.compile(r"<function=([^>\n]*)>")
_PARAMETER_OPEN = re.compile(r"<parameter=([^>\n]*)>")


def _strip_one_newline(value: str) -> str:
    if value.startswith("\n"):
        value = value[1:]
    if value.endswith("\n"):
        value = value[:-1]
    return value


def _parse_xml_form(body: str) -> tuple[str, dict[str, str]]:
    m = _FUNCTION_OPEN.match(body)
    if not m:
        raise SchemaError("a tool call must start with <function=NAME>")
    name = m.group(1).strip()
    if not name:
        raise SchemaError("empty function name in <function=...>")
    pos = m.end()
    args: dict[str, str] = {}
    while True:
        gap_end = pos
        while gap_end < len(body) and body[gap_end] in " \t\r\n":
            gap_end += 1
        rest = body[gap_end:]
        if rest.startswith("</function>"):
            if rest[len("</function>"):].strip():
                raise SchemaError("unexpected text after </function>; put each call in its own <tool_call>")
            return name, args
        p = _PARAMETER_OPEN.match(rest)
        if not p:
            if not rest:
                raise SchemaError("missing </function>")
            raise SchemaError(f"expected <parameter=NAME> or </function>, found {rest[:40]!r}")
        pname = p.group(1).strip()
        if not pname:
            raise SchemaError("empty parameter name in <parameter=...>")
        start = gap_end + p.end()
        end = body.find("</parameter>", start)
        if end < 0:
            raise SchemaError(f"parameter {pname!r} is missing </parameter>")
        if pname in args:
            raise SchemaError(f"parameter {pname!r} given twice")
        args[pname] = _strip_one_newline(body[start:end])
        pos = end + len("</parameter>")


def _parse_json_form(body: str) -> tuple[str, dict[str, Any]]:
    try:
        obj = json.loads(body)
    except (json.JSONDecodeError, RecursionError):
        raise SchemaError('tool call is not valid JSON {"name": ..., "arguments": {...}}') from None
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str) or not obj["name"]:
        raise SchemaError('tool call JSON needs a string "name"')
    args = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(args, str):  # some servers double-encode
        try:
            args = json.loads(args)
        except (json.JSONDecodeError, RecursionError):
            raise SchemaError('"arguments" is a string that is not a JSON object') from None
    if not isinstance(args, dict):
        raise SchemaError('"arguments" must be a JSON object')
    extra = sorted(set(obj) - {"name", "arguments", "parameters"})
    if extra:
        raise SchemaError(f"unexpected key(s) {extra} in tool call JSON")
    return obj["name"], args


def parse_tool_call_block(body: str, schemas: Mapping[str, Mapping[str, Any]]) -> ParsedToolCall | ToolCallError:
    """Parse the text between <tool_call> and </tool_call> into a checked call or an error.

    schemas: tool name -> JSON schema of its parameters ({"type": "object", "properties": ...}).
    """
    stripped = body.strip()
    try:
        if stripped.startswith("{"):
            name, args = _parse_json_form(stripped)
            from_text = False
        else:
            name, args = _parse_xml_form(stripped)
            from_text = True
        if name not in schemas:
            raise SchemaError(f"unknown tool {name!r}; available tools: {sorted(schemas)}")
        converted = convert_arguments(name, args, schemas[name], from_text)
    except SchemaError as exc:
        return ToolCallError(str(exc), body)
    return ParsedToolCall(name, converted, body)


# ----------------------------------------------------------------------------------------
# The streaming state machine
# ----------------------------------------------------------------------------------------

def _held_back(buf: str, tags: tuple[str, ...]) -> int:
    """Length of the longest suffix of buf that is a proper prefix of one of the tags."""
    best = 0
    for tag in tags:
        for n in range(min(len(tag) - 1, len(buf)), best, -1):
            if buf.endswith(tag[:n]):
                best = n
                break
    return best


class OutputStreamParser:
    """Incremental parser; feed chunks, then call finish() once the turn has ended.

    start_in_thinking: the prompt already ended with "<think>\\n" (Qwen3.5's template does
    that when thinking is on), so the output begins inside the thinking block.
    """

    _TEXT, _THINK, _CALL, _SKIP_CALL = "text", "think", "call", "skip_call"

    def __init__(self, schemas: Mapping[str, Mapping[str, Any]], start_in_thinking: bool = False):
        self._schemas = schemas
        self._state = self._THINK if start_in_thinking else self._TEXT
        self._buf = ""
        self._done = False

    def feed(self, chunk: str) -> list[ParserEvent]:
        if self._done:
            raise RuntimeError("feed() after finish()")
        self._buf += chunk
        return self._drain(final=False)

    def finish(self) -> list[ParserEvent]:
        events = self._drain(final=True)
        if self._state == self._CALL:
            events.append(ToolCallError("the output ended inside <tool_call> (missing </tool_call>)",
                                        self._buf, TOOL_CALL_OPEN + self._buf))
        elif self._state == self._SKIP_CALL:
            pass  # its error was already reported
        elif self._state == self._THINK and self._buf:
            events.append(ThinkingDelta(self._buf))
        elif self._buf:
            events.extend(self._text_events(self._buf))
        self._buf = ""
        self._done = True
        return events

    # -- internals --------------------------------------------------------------------
    def _text_events(self, text: str) -> list[ParserEvent]:
        """Text outside any block; stray closing/function tags mean malformed tool output."""
        events: list[ParserEvent] = [
            ToolCallError(f"tool-call markup {tag!r} outside a <tool_call>...</tool_call> block", tag)
            for tag in _STRAY_MARKUP.findall(text)]
        events.append(TextDelta(text))
        return events

    def _drain(self, final: bool) -> list[ParserEvent]:
        events: list[ParserEvent] = []
        while self._buf:
            if self._state == self._THINK:
                i = self._buf.find(THINK_CLOSE)
                if i < 0:
                    keep = 0 if final else _held_back(self._buf, (THINK_CLOSE,))
                    out, self._buf = self._buf[:len(self._buf) - keep], self._buf[len(self._buf) - keep:]
                    if out:
                        events.append(ThinkingDelta(out))
                    break
                if i:
                    events.append(ThinkingDelta(self._buf[:i]))
                self._buf = self._buf[i + len(THINK_CLOSE):]
                self._state = self._TEXT
            elif self._state == self._TEXT:
                hits = [(self._buf.find(t), t) for t in (THINK_OPEN, TOOL_CALL_OPEN, THINK_CLOSE)]
                hits = [(i, t) for i, t in hits if i >= 0]
                if not hits:
                    # Hold back a possible tag start, and also a partial stray-markup tag so the
                    # malformed-markup check sees whole tags whatever the split.
                    keep = 0 if final else _held_back(
                        self._buf, (THINK_OPEN, TOOL_CALL_OPEN, THINK_CLOSE, TOOL_CALL_CLOSE, "<function=", "</function>", "<parameter="))
                    out, self._buf = self._buf[:len(self._buf) - keep], self._buf[len(self._buf) - keep:]
                    if out:
                        # markup check needs a whole tag; a tag split across emitted text is
                        # impossible because of the hold-back above.
                        events.extend(self._text_events(out))
                    break
                i, tag = min(hits)
                if i:
                    events.extend(self._text_events(self._buf[:i]))
                self._buf = self._buf[i + len(tag):]
                if tag == THINK_OPEN:
                    self._state = self._THINK
                elif tag == TOOL_CALL_OPEN:
                    self._state = self._CALL
                # a stray </think> in text is dropped (the template may have opened it)
            elif self._state == self._CALL:
                i = self._buf.find(TOOL_CALL_CLOSE)
                if (i < 0 and len(self._buf) > MAX_TOOL_CALL_CHARS) or i > MAX_TOOL_CALL_CHARS:
                    # too long: one error, then skip to its </tool_call> (same result for any split)
                    events.append(ToolCallError(
                        f"tool call longer than {MAX_TOOL_CALL_CHARS} characters", self._buf[:200],
                        TOOL_CALL_OPEN + self._buf[:200] + "..."))
                    self._state = self._SKIP_CALL
                    continue
                if i < 0:
                    break
                parsed = parse_tool_call_block(self._buf[:i], self._schemas)
                if isinstance(parsed, ToolCallError):
                    parsed = ToolCallError(parsed.message, parsed.raw, TOOL_CALL_OPEN + parsed.raw + TOOL_CALL_CLOSE)
                events.append(parsed)
                self._buf = self._buf[i + len(TOOL_CALL_CLOSE):]
                self._state = self._TEXT
            else:  # skipping the rest of an over-long call
                i = self._buf.find(TOOL_CALL_CLOSE)
                if i < 0:
                    keep = _held_back(self._buf, (TOOL_CALL_CLOSE,))
                    self._buf = self._buf[len(self._buf) - keep:] if keep else ""
                    break
                self._buf = self._buf[i + len(TOOL_CALL_CLOSE):]
                self._state = self._TEXT
        return events


def parse_output(text: str, schemas: Mapping[str, Mapping[str, Any]], start_in_thinking: bool = False) -> ParsedTurn:
    """Parse a complete turn in one go (the same result as streaming it in any chunks)."""
    parser = OutputStreamParser(schemas, start_in_thinking)
    turn = ParsedTurn()
    for event in parser.feed(text) + parser.finish():
        turn.add(event)
    return turn
