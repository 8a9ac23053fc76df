"""Output parser: hand-written Qwen3.5 outputs, every split point, and a fuzz test."""
from __future__ import annotations

import random

import pytest

from qwen_stack.qwen_node.agent.output_parser import (
    MAX_TOOL_CALL_CHARS, OutputStreamParser, ParsedToolCall, ParsedTurn, ToolCallError, parse_output,
    parse_tool_call_block)

SCHEMAS = {
    "drive_distance": {"type": "object", "properties": {
        "distance": {"type": "number", "minimum": -2.0, "maximum": 2.0},
        "speed": {"type": "number", "minimum": 0.0, "maximum": 0.5}}, "required": ["distance"]},
    "grasp": {"type": "object", "properties": {"object_name": {"type": "string"}}, "required": []},
    "describe_state": {"type": "object", "properties": {}, "required": []},
    "plan_route": {"type": "object", "properties": {
        "waypoints": {"type": "array"}, "options": {"type": "object"},
        "repeat": {"type": "integer", "minimum": 1}, "careful": {"type": "boolean"}}, "required": ["waypoints"]},
}


def xml_call(name: str, **params: str) -> str:
    body = "".join(f"<parameter={k}>\n{v}\n</parameter>\n" for k, v in params.items())
    return f"<tool_call>\n<function={name}>\n{body}</function>\n</tool_call>"


def stream(text: str, cuts: list[int], start_in_thinking: bool = False) -> ParsedTurn:
    parser = OutputStreamParser(SCHEMAS, start_in_thinking)
    turn = ParsedTurn()
    prev = 0
    for c in sorted(cuts) + [len(text)]:
        for e in parser.feed(text[prev:c]):
            turn.add(e)
        prev = c
    for e in parser.finish():
        turn.add(e)
    return turn


def summary(turn: ParsedTurn):
    return (turn.thinking, turn.text, [(c.name, c.arguments) for c in turn.calls],
            [(e.message, e.raw) for e in turn.errors])


TWO_CALLS = (
    "<think>\nThe user wants me to move. I could write <tool_call> here but I am only thinking;"
    " even </tool_call> and <function=grasp> are just words.\n</think>\n\n"
    "I will drive forward, then grasp.\n"
    + xml_call("drive_distance", distance="1.5", speed="0.25") + "\n"
    + xml_call("grasp", object_name="red cube\nthe big one")
)

NESTED = xml_call("plan_route", waypoints='[{"x": 1, "y": [2, 3]}, {"x": -0.5, "y": []}]',
                  options='{"avoid": {"zones": ["kitchen"], "margin": 0.3}}', repeat="2", careful="True")


def test_two_xml_calls_with_tag_like_thinking():
    turn = parse_output(TWO_CALLS, SCHEMAS)
    assert "<tool_call> here" in turn.thinking and "<function=grasp>" in turn.thinking
    assert turn.text.strip() == "I will drive forward, then grasp."
    assert [(c.name, c.arguments) for c in turn.actions] == [
        ("drive_distance", {"distance": 1.5, "speed": 0.25}),
        ("grasp", {"object_name": "red cube\nthe big one"})]
    assert turn.errors == []


def test_nested_json_values_are_converted():
    turn = parse_output(NESTED, SCHEMAS)
    (call,) = turn.actions
    assert call.arguments == {"waypoints": [{"x": 1, "y": [2, 3]}, {"x": -0.5, "y": []}],
                              "options": {"avoid": {"zones": ["kitchen"], "margin": 0.3}},
                              "repeat": 2, "careful": True}


def test_json_form_of_older_models():
    text = ('<tool_call>\n{"name": "plan_route", "arguments": {"waypoints": [[0, 1], {"a": {"b": [1]}}], '
            '"repeat": 3}}\n</tool_call>\n<tool_call>\n{"name": "describe_state", "arguments": {}}\n</tool_call>')
    turn = parse_output(text, SCHEMAS)
    assert [(c.name, c.arguments) for c in turn.actions] == [
        ("plan_route", {"waypoints": [[0, 1], {"a": {"b": [1]}}], "repeat": 3}), ("describe_state", {})]


def test_output_starting_inside_thinking():
    # Qwen3.5's template ends the prompt with "<think>\n": the output has only the closing tag.
    text = "let me look around first\n</think>\n\n" + xml_call("describe_state")
    turn = parse_output(text, SCHEMAS, start_in_thinking=True)
    assert turn.thinking == "let me look around first\n"
    assert [c.name for c in turn.actions] == ["describe_state"]


def test_answer_without_calls_is_text():
    turn = parse_output("<think>done?</think>The cube is on the blue square.", SCHEMAS)
    assert turn.text == "The cube is on the blue square." and turn.calls == [] and turn.errors == []


@pytest.mark.parametrize("text", [TWO_CALLS, NESTED, TWO_CALLS + "\n" + NESTED])
@pytest.mark.parametrize("start_in_thinking", [False, True])
def test_every_split_point_gives_the_same_result(text, start_in_thinking):
    whole = summary(stream(text, [], start_in_thinking))
    for i in range(len(text) + 1):
        assert summary(stream(text, [i], start_in_thinking)) == whole, f"split at {i}"
    # and one character at a time
    assert summary(stream(text, list(range(len(text))), start_in_thinking)) == whole


@pytest.mark.parametrize("text, fragment", [
    (xml_call("drive_distance", distance="9.0"), "above its maximum"),
    (xml_call("drive_distance", distance="fast"), "must be a number"),
    (xml_call("drive_distance", distance="nan"), "finite"),
    (xml_call("drive_distance", speed="0.1"), "missing required"),
    (xml_call("drive_distance", distance="1", wheels="4"), "no parameter"),
    (xml_call("fly", height="3"), "unknown tool"),
    (xml_call("plan_route", waypoints="[1, 2"), "not valid JSON"),
    (xml_call("plan_route", waypoints='{"a": 1}'), "must be a JSON array"),
    (xml_call("plan_route", waypoints="[]", repeat="1.5"), "must be an integer"),
    (xml_call("plan_route", waypoints="[]", careful="yes"), "true or false"),
    ("<tool_call>\n<function=drive_distance>\n<parameter=distance>\n1\n</function>\n</tool_call>", "missing </parameter>"),
    ("<tool_call>\n<function=drive_distance>\n<parameter=distance>\n1\n</parameter>\n</tool_call>", "missing </function>"),
    ("<tool_call>\n<function=drive_distance>\nhello<parameter=distance>\n1\n</parameter>\n</function>\n</tool_call>",
     "expected <parameter=NAME>"),
    ('<tool_call>\n{"name": "drive_distance", "arguments": {"distance": 1}\n</tool_call>', "not valid JSON"),
    ('<tool_call>\n{"name": "drive_distance", "arguments": [1]}\n</tool_call>', "must be a JSON object"),
    ('<tool_call>\n{"name": "drive_distance", "arguments": {"distance": "1"}}\n</tool_call>', None),
    ("<tool_call>\n<function=drive_distance>\n<parameter=distance>\n1\n</parameter>\n", "ended inside <tool_call>"),
    ("<function=drive_distance>\n<parameter=distance>\n1\n</parameter>\n</function>", "outside a <tool_call>"),
])
def test_malformed_calls_become_errors_and_no_action(text, fragment):
    turn = parse_output(xml_call("describe_state") + "\n" + text, SCHEMAS)
    if fragment is None:  # a JSON-form string number is converted (number schema) - valid
        assert len(turn.actions) == 2
        return
    assert turn.actions == [], "a turn with any malformed call executes nothing"
    assert any(fragment in e.message for e in turn.errors), [e.message for e in turn.errors]


def test_over_long_call_is_an_error_and_skipped_whatever_the_split():
    text = "<tool_call>" + "x" * (MAX_TOOL_CALL_CHARS + 10) + "</tool_call>after"
    for cuts in ([], [100], [MAX_TOOL_CALL_CHARS + 5], list(range(0, len(text), 997))):
        turn = stream(text, cuts)
        assert len(turn.errors) == 1 and "longer than" in turn.errors[0].message
        assert turn.text == "after" and turn.calls == []


def test_block_parser_reports_name_in_error():
    err = parse_tool_call_block("\n<function=>\n</function>\n", SCHEMAS)
    assert isinstance(err, ToolCallError) and "empty function name" in err.message


# --- fuzz --------------------------------------------------------------------------------

_PIECES = ["<think>", "</think>", "<tool_call>", "</tool_call>", "<function=", "</function>", "<parameter=",
           "</parameter>", "drive_distance>", "distance>", "speed>", "grasp>", "\n", "1.5", "-3", "nan", "1e400",
           "{", "}", "[", "]", '"', ":", ",", '{"name": "drive_distance", "arguments": {"distance": 1}}',
           "<", ">", "=", "/", "hello ", "object_name>", "é漢", "\x00", "plan_route>", "waypoints>"]


def _random_output(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.4:  # a valid output, whole (r < 0.1) or truncated at a random point
        base = rng.choice([TWO_CALLS, NESTED, xml_call("describe_state")])
        return base if r < 0.1 else base[: rng.randrange(len(base))]
    return "".join(rng.choice(_PIECES) if rng.random() < 0.8 else chr(rng.randrange(32, 0x3000))
                   for _ in range(rng.randrange(0, 40)))


def _is_valid_by_construction(call: ParsedToolCall) -> bool:
    """Independent check of an accepted call: known tool, schema-typed, in range."""
    schema = SCHEMAS.get(call.name)
    if schema is None:
        return False
    props = schema["properties"]
    for k, v in call.arguments.items():
        t = props[k]["type"]
        ok = {"number": lambda: isinstance(v, float) and props[k].get("minimum", -1e9) <= v <= props[k].get("maximum", 1e9),
              "integer": lambda: isinstance(v, int) and not isinstance(v, bool),
              "string": lambda: isinstance(v, str), "boolean": lambda: isinstance(v, bool),
              "array": lambda: isinstance(v, list), "object": lambda: isinstance(v, dict)}[t]()
        if not ok:
            return False
    return all(r in call.arguments for r in schema["required"])


def test_fuzz_random_and_truncated_outputs():
    rng = random.Random(1234)
    n_actions = n_errors = 0
    for _ in range(10_000):
        text = _random_output(rng)
        cut = rng.randrange(len(text) + 1)
        turn = stream(text, [cut], start_in_thinking=rng.random() < 0.2)
        for call in turn.calls:
            assert _is_valid_by_construction(call), call
        # truncated valid outputs ending inside a call never act
        if text.count("<tool_call>") > text.count("</tool_call>") and "<think>" not in text:
            assert turn.actions == []
        n_actions += len(turn.actions)
        n_errors += len(turn.errors)
    assert n_errors > 1000  # the fuzzer does reach the error paths
    assert n_actions > 100  # and the valid ones


def test_truncations_of_valid_outputs_never_act_partially():
    text = TWO_CALLS
    full = parse_output(text, SCHEMAS)
    for i in range(len(text)):
        turn = parse_output(text[:i], SCHEMAS)
        # every action of a truncated output is one of the full output's calls, complete
        for c in turn.actions:
            assert (c.name, c.arguments) in [(f.name, f.arguments) for f in full.calls]
        if text[:i].count("<tool_call>") > text[:i].count("</tool_call>"):
            assert turn.actions == []
