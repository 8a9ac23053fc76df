"""Qwen3.5 chat format (as its chat template renders it), as plain string building.

Messages are dicts: {"role": "system"|"user"|"assistant"|"tool", "content": str | list of parts}.
A part is {"type": "text", "text": ...}, {"type": "image"} or {"type": "video"} (pixels are passed
separately, in order). Assistant messages may carry "reasoning_content" and "tool_calls":
[{"name": ..., "arguments": {...}}] (OpenAI style {"function": {...}} also accepted).

    <|im_start|>system\n# Tools\n\nYou have access to the following functions:\n\n<tools>\n{tool json}...\n</tools>
    \n\n{instructions}[\n\n{system prompt}]<|im_end|>\n
    <|im_start|>user\n{text, <|vision_start|><|image_pad|><|vision_end|> per image}<|im_end|>\n
    <|im_start|>assistant\n<think>\n{reasoning}\n</think>\n\n{answer}<tool_call>...</tool_call><|im_end|>\n
    <|im_start|>user\n<tool_response>\n{result}\n</tool_response><|im_end|>\n   (consecutive tool turns share one)
    <|im_start|>assistant\n<think>\n                   (generation prompt; thinking off: <think>\n\n</think>\n\n)
"""
from __future__ import annotations

import json

IMAGE_PLACEHOLDER = "<|vision_start|><|image_pad|><|vision_end|>"
VIDEO_PLACEHOLDER = "<|vision_start|><|video_pad|><|vision_end|>"

SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>",
    "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
    "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>",
    "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>", "<tool_response>", "</tool_response>",
    "<think>", "</think>", "<|audio_start|>", "<|audio_end|>", "<tts_pad>", "<tts_text_bos>", "<tts_text_eod>",
    "<tts_text_bos_single>", "<|audio_pad|>",
)

TOOLS_HEADER = "# Tools\n\nYou have access to the following functions:\n\n<tools>"
TOOLS_INSTRUCTIONS = (
    "\n\nIf you choose to call a function ONLY reply in the following format with NO suffix:\n\n"
    "<tool_call>\n<function=example_function_name>\n<parameter=example_parameter_1>\nvalue_1\n</parameter>\n"
    "<parameter=example_parameter_2>\nThis is the value for the second parameter\nthat can span\nmultiple lines\n"
    "</parameter>\n</function>\n</tool_call>\n\n<IMPORTANT>\nReminder:\n"
    "- Function calls MUST follow the specified format: an inner <function=...></function> block must be nested "
    "within <tool_call></tool_call> XML tags\n- Required parameters MUST be specified\n"
    "- You may provide optional reasoning for your function call in natural language BEFORE the function call, "
    "but NOT after\n- If there is no function call available, answer the question like a helpful assistant\n"
    "</IMPORTANT>"
)


class ChatFormatError(ValueError):
    """A message list the chat format cannot render (bad role, bad part, special tokens in content)."""


def _check_plain(text: str, where: str, allowed: tuple[str, ...] = ()) -> str:
    if not isinstance(text, str):
        raise ChatFormatError(f"{where}: content must be a string, got {type(text).__name__}")
    for tok in SPECIAL_TOKENS:
        if tok in text and tok not in allowed:
            raise ChatFormatError(f"{where}: content contains the special token {tok!r}; it is not allowed in "
                                  f"message text")
    return text


def render_content(content, where: str, allowed: tuple[str, ...] = ()) -> tuple[str, int, int]:
    """content -> (text with one placeholder per image/video, number of images, number of videos)."""
    if isinstance(content, str):
        return _check_plain(content, where, allowed), 0, 0
    if content is None:
        return "", 0, 0
    out, n_img, n_vid = [], 0, 0
    for i, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            out.append(_check_plain(part.get("text", ""), f"{where}[{i}]", allowed))
        elif kind in ("image", "image_url"):
            out.append(IMAGE_PLACEHOLDER)
            n_img += 1
        elif kind == "video":
            out.append(VIDEO_PLACEHOLDER)
            n_vid += 1
        else:
            raise ChatFormatError(f"{where}[{i}]: part type {kind!r} is not 'text', 'image' or 'video'")
    return "".join(out), n_img, n_vid


def _render_tool_call(call: dict, where: str) -> str:
    fn = call.get("function", call)
    name, args = fn.get("name"), fn.get("arguments", {})
    if not isinstance(name, str) or not name:
        raise ChatFormatError(f"{where}: tool call without a name")
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except json.JSONDecodeError as exc:
            raise ChatFormatError(f"{where}: tool call arguments are not JSON ({exc})") from exc
    s = f"<tool_call>\n<function={name}>\n"
    for key, value in args.items():
        shown = json.dumps(value, ensure_ascii=False) if isinstance(value, (dict, list)) else str(value)
        s += f"<parameter={key}>\n{shown}\n</parameter>\n"
    return s + "</function>\n</tool_call>"


def render_chat(messages: list[dict], tools: list[dict] | None = None, add_generation_prompt: bool = True,
                enable_thinking: bool = True) -> tuple[str, int, int]:
    """Messages (+ tools) -> (prompt text, number of images, number of videos), image/video as placeholders."""
    if not messages:
        raise ChatFormatError("messages: empty")
    parts: list[str] = []
    n_img = n_vid = 0
    first = 0
    system_text = None
    if messages[0].get("role") == "system":
        system_text, a, b = render_content(messages[0].get("content"), "messages[0]")
        n_img, n_vid, first = n_img + a, n_vid + b, 1
    if tools:
        s = "<|im_start|>system\n" + TOOLS_HEADER
        for tool in tools:
            s += "\n" + json.dumps(tool, ensure_ascii=False)
        s += "\n</tools>" + TOOLS_INSTRUCTIONS
        if system_text and system_text.strip():
            s += "\n\n" + system_text.strip()
        parts.append(s + "<|im_end|>\n")
    elif system_text is not None:
        parts.append(f"<|im_start|>system\n{system_text}<|im_end|>\n")

    # the last user turn that is a real query (not a tool result): assistant turns after it show their reasoning
    last_query = len(messages) - 1
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].get("role") == "user":
            last_query = i
            break
    for i in range(first, len(messages)):
        m = messages[i]
        role, where = m.get("role"), f"messages[{i}]"
        if role in ("user", "system"):
            text, a, b = render_content(m.get("content"), where)
            n_img, n_vid = n_img + a, n_vid + b
            parts.append(f"<|im_start|>{role}\n{text}<|im_end|>\n")
        elif role == "assistant":
            content, reasoning = m.get("content"), m.get("reasoning_content")
            if reasoning is None and isinstance(content, str) and "</think>" in content:
                # raw model output: "<think>\n...\n</think>\n\nanswer" -> reasoning + answer
                reasoning = content.split("</think>")[0].split("<think>")[-1].strip("\n")
                content = content.split("</think>")[-1].lstrip("\n")
            text, a, b = render_content(content, where, allowed=("<tool_call>", "</tool_call>"))
            n_img, n_vid = n_img + a, n_vid + b
            if i > last_query:
                reasoning = _check_plain(reasoning or "", where + ".reasoning_content")
                s = f"<|im_start|>assistant\n<think>\n{reasoning.strip(chr(10))}\n</think>\n\n{text.lstrip(chr(10))}"
            else:
                s = f"<|im_start|>assistant\n{text}"
            for j, call in enumerate(m.get("tool_calls") or []):
                sep = ("\n\n" if text.strip() else "") if j == 0 else "\n"
                s += sep + _render_tool_call(call, f"{where}.tool_calls[{j}]")
            parts.append(s + "<|im_end|>\n")
        elif role == "tool":
            text, a, b = render_content(m.get("content"), where)
            n_img, n_vid = n_img + a, n_vid + b
            s = "" if i > 0 and messages[i - 1].get("role") == "tool" else "<|im_start|>user"
            s += f"\n<tool_response>\n{text}\n</tool_response>"
            if i == len(messages) - 1 or messages[i + 1].get("role") != "tool":
                s += "<|im_end|>\n"
            parts.append(s)
        else:
            raise ChatFormatError(f"{where}: role {role!r} is not system, user, assistant or tool")
    if add_generation_prompt:
        parts.append("<|im_start|>assistant\n" + ("<think>\n" if enable_thinking else "<think>\n\n</think>\n\n"))
    return "".join(parts), n_img, n_vid


def video_placeholder(timestamps: list[float], tokens_per_frame: int) -> str:
    """One video's prompt text: per temporal patch pair, "<t seconds>" then its tokens between vision markers."""
    return "".join(f"<{t:.1f} seconds><|vision_start|>" + "<|video_pad|>" * tokens_per_frame + "<|vision_end|>"
                   for t in timestamps)


def expand_placeholders(text: str, image_tokens: list[int], video_texts: list[str]) -> str:
    """Replace the k-th image placeholder by image_tokens[k] <|image_pad|> tokens (between vision markers)
    and the k-th video placeholder by video_texts[k] (see video_placeholder)."""
    pieces = text.split(IMAGE_PLACEHOLDER)
    if len(pieces) - 1 != len(image_tokens):
        raise ChatFormatError(f"{len(pieces) - 1} image placeholders in the messages but {len(image_tokens)} images given")
    text = pieces[0] + "".join("<|vision_start|>" + "<|image_pad|>" * n + "<|vision_end|>" + rest
                               for n, rest in zip(image_tokens, pieces[1:]))
    pieces = text.split(VIDEO_PLACEHOLDER)
    if len(pieces) - 1 != len(video_texts):
        raise ChatFormatError(f"{len(pieces) - 1} video placeholders in the messages but {len(video_texts)} videos given")
    return pieces[0] + "".join(v + rest for v, rest in zip(video_texts, pieces[1:]))
