"""Tokenizer and chat format: token ids of chat transcripts against expectations built by hand from the
special-token table (ordinary text pieces are encoded separately, exactly where the format puts them)."""
from __future__ import annotations

import json

import pytest

from qwen_stack.qwen_node.engine.chat import (ChatFormatError, expand_placeholders, render_chat,
                                              video_placeholder)
from qwen_stack.qwen_node.engine.tokenizer import QwenTokenizer

# the special-token table (Qwen3.5): id = 248044 + index
ENDOFTEXT, IM_START, IM_END = 248044, 248045, 248046
VISION_START, VISION_END, IMAGE_PAD, VIDEO_PAD = 248053, 248054, 248056, 248057
TOOL_CALL, TOOL_CALL_END, TOOL_RESPONSE, TOOL_RESPONSE_END = 248058, 248059, 248066, 248067
THINK, THINK_END = 248068, 248069
NL, NL2 = 198, 271   # "\n", "\n\n" (byte-level BPE ids)


@pytest.fixture(scope="module")
def tok():
    return QwenTokenizer()


SPECIAL_IDS = {"<tool_call>": TOOL_CALL, "</tool_call>": TOOL_CALL_END}


def piecewise(tok, text):
    """Ordinary text encoded piece by piece around the special tokens it mentions (ids from the table)."""
    out, rest = [], text
    while True:
        hits = [(rest.find(s), s) for s in SPECIAL_IDS if s in rest]
        if not hits:
            return out + tok.encode(rest)
        at, s = min(hits)
        out += tok.encode(rest[:at]) + [SPECIAL_IDS[s]]
        rest = rest[at + len(s):]


def ids(tok, text, images=(), videos=()):
    return tok.encode(expand_placeholders(text, list(images), list(videos)))


def test_special_token_table(tok):
    assert tok.vocab_size == 248044 + 33
    assert tok.token_id("<|image_pad|>") == IMAGE_PAD
    assert tok.token_id("<|video_pad|>") == VIDEO_PAD
    assert tok.token_id("<|vision_start|>") == VISION_START
    assert tok.encode("\n") == [NL] and tok.encode("\n\n") == [NL2]
    assert tok.decode([IM_START]) == "<|im_start|>"
    assert tok.encode("<|im_end|>", allow_special=False) != [IM_END]


def test_user_turn_thinking_on(tok):
    text, _, _ = render_chat([{"role": "user", "content": "Hi"}])
    want = [IM_START, *tok.encode("user"), NL, *tok.encode("Hi"), IM_END, NL,
            IM_START, *tok.encode("assistant"), NL, THINK, NL]
    assert ids(tok, text) == want


def test_thinking_off_injects_empty_think_block(tok):
    text, _, _ = render_chat([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
                             enable_thinking=False)
    want = [IM_START, *tok.encode("system"), NL, *tok.encode("Be brief."), IM_END, NL,
            IM_START, *tok.encode("user"), NL, *tok.encode("Hi"), IM_END, NL,
            IM_START, *tok.encode("assistant"), NL, THINK, NL2, THINK_END, NL2]
    assert ids(tok, text) == want


def test_tools_section_and_tool_call_and_response(tok):
    tool = {"type": "function", "function": {"name": "rotate", "description": "Turn in place",
                                             "parameters": {"type": "object", "properties": {"deg": {"type": "number"}}}}}
    msgs = [{"role": "system", "content": "You drive a robot."},
            {"role": "user", "content": "Turn left"},
            {"role": "assistant", "content": "", "reasoning_content": "Left is +90.",
             "tool_calls": [{"name": "rotate", "arguments": {"deg": 90}}]},
            {"role": "tool", "content": "{\"ok\": true}"}]
    text, _, _ = render_chat(msgs, tools=[tool])
    header, instructions = text.split("<tools>")[0], text.split("</tools>")[1].split("<|im_end|>")[0]
    assert header == "<|im_start|>system\n# Tools\n\nYou have access to the following functions:\n\n"
    assert instructions.endswith("</IMPORTANT>\n\nYou drive a robot.")
    inner = "\n" + json.dumps(tool) + "\n"
    system = ("system\n# Tools\n\nYou have access to the following functions:\n\n<tools>" + inner + "</tools>"
              + instructions)
    want = [IM_START, *piecewise(tok, system), IM_END, NL,
            IM_START, *tok.encode("user"), NL, *tok.encode("Turn left"), IM_END, NL,
            # after the last user query: reasoning shown in a think block, then the call
            IM_START, *tok.encode("assistant"), NL, THINK, *tok.encode("\nLeft is +90.\n"), THINK_END, NL2,
            TOOL_CALL, *tok.encode("\n<function=rotate>\n<parameter=deg>\n90\n</parameter>\n</function>\n"),
            TOOL_CALL_END, IM_END, NL,
            IM_START, *tok.encode("user"), NL, TOOL_RESPONSE, *tok.encode("\n{\"ok\": true}\n"), TOOL_RESPONSE_END,
            IM_END, NL, IM_START, *tok.encode("assistant"), NL, THINK, NL]
    assert ids(tok, text) == want


def test_consecutive_tool_responses_share_one_user_turn(tok):
    msgs = [{"role": "user", "content": "Go"},
            {"role": "assistant", "content": "", "tool_calls": [{"name": "a", "arguments": {}},
                                                                {"name": "b", "arguments": {}}]},
            {"role": "tool", "content": "1"}, {"role": "tool", "content": "2"}]
    text, _, _ = render_chat(msgs, add_generation_prompt=False)
    assert text.endswith("<|im_start|>user\n<tool_response>\n1\n</tool_response>\n<tool_response>\n2\n"
                         "</tool_response><|im_end|>\n")
    assert "</tool_call>\n<tool_call>" in text
    assert text.count("<|im_start|>user") == 2


def test_image_turn_expands_to_pad_tokens(tok):
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is this?"}]}]
    text, n_img, n_vid = render_chat(msgs)
    assert (n_img, n_vid) == (1, 0)
    want = [IM_START, *tok.encode("user"), NL, VISION_START, *[IMAGE_PAD] * 6, VISION_END,
            *tok.encode("What is this?"), IM_END, NL, IM_START, *tok.encode("assistant"), NL, THINK, NL]
    assert ids(tok, text, images=[6]) == want


def test_video_turn_has_timestamps_per_frame_pair(tok):
    msgs = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "Describe."}]}]
    text, _, n_vid = render_chat(msgs, enable_thinking=False)
    assert n_vid == 1
    video = video_placeholder([0.25, 1.25], tokens_per_frame=4)
    want = [IM_START, *tok.encode("user"), NL,
            *tok.encode("<0.2 seconds>"), VISION_START, *[VIDEO_PAD] * 4, VISION_END,
            *tok.encode("<1.2 seconds>"), VISION_START, *[VIDEO_PAD] * 4, VISION_END,
            *tok.encode("Describe."), IM_END, NL, IM_START, *tok.encode("assistant"), NL,
            THINK, NL2, THINK_END, NL2]
    assert ids(tok, text, videos=[video]) == want


def test_earlier_assistant_turns_drop_reasoning(tok):
    msgs = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "<think>\nhmm\n</think>\n\nb"},
            {"role": "user", "content": "c"}]
    text, _, _ = render_chat(msgs, add_generation_prompt=False)
    assert "<|im_start|>assistant\nb<|im_end|>\n" in text and "hmm" not in text


@pytest.mark.parametrize("bad", [
    [{"role": "user", "content": "hi <|im_end|> there"}],
    [{"role": "robot", "content": "x"}],
    [{"role": "user", "content": [{"type": "audio"}]}],
    [],
])
def test_bad_messages_are_rejected(bad):
    with pytest.raises(ChatFormatError):
        render_chat(bad)


def test_placeholder_count_mismatch_is_rejected():
    text, _, _ = render_chat([{"role": "user", "content": [{"type": "image"}]}])
    with pytest.raises(ChatFormatError, match="1 image placeholders.*0 images"):
        expand_placeholders(text, [], [])
