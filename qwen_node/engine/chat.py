"""Qwen3.5 chat format: the official chat template (chat_template.jinja of the Qwen/Qwen3.5 checkpoints),
rendered byte-for-byte as plain string building.

Messages are dicts: {"role": "system"|"user"|"assistant"|"tool", "content": str | list of parts | None}.
A part is {"type": "text", "text": ...}, {"type": "image"} or {"type": "video"} (pixels are passed
separately, in order; {"type": "image_url", ...} counts as an image). Assistant messages may carry
"reasoning_content" and "tool_calls": [{"name": ..., "arguments": {...}}] (OpenAI style {"function": {...}}
also accepted; arguments given as a JSON string are decoded first, as OpenAI-compatible servers do).

    <|im_start|>system\n# Tools\n\nYou have access to the following functions:\n\n<tools>\n{tool json}...\n</tools>
    \n\n{instructions}[\n\n{system prompt}]<|im_end|>\n
    <|im_start|>user\n{text, <|vision_start|><|image_pad|><|vision_end|> per image}<|im_end|>\n
    <|im_start|>assistant\n<think>\n{reasoning}\n</think>\n\n{answer}\n\n<tool_call>...</tool_call><|im_end|>\n
    <|im_start|>user\n<tool_response>\n{result}\n</tool_response><|im_end|>\n   (consecutive tool turns share one)
    <|im_start|>assistant\n<think>\n                   (generation prompt; thinking off: <think>\n\n</think>\n\n)

As in the template: every message's content is stripped of surrounding whitespace, and so is the
reasoning; assistant turns after the last real user query (one that is not only a tool response) show
their reasoning, earlier ones drop it; a system message must come first; a conversation without a user
query is refused. Unlike the template, message text may not contain special tokens (an injected
"<|im_end|>" would forge turns): ChatFormatError. tests/engine/test_chat_template.py renders the
official template with jinja2 beside this over many conversations and requires identical strings.
A checkpoint that ships its own template is rendered with it instead (chat_template.py).
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
# an assistant turn may hold its raw output: the reasoning block and tool calls
ASSISTANT_TAGS = ("<think>", "</think>", "<tool_call>", "</tool_call>")
# a user turn may carry tool results wrapped by the client (the template looks for that form)
USER_TAGS = ("<tool_response>", "</tool_response>")

TOOLS_HEADER = "# Tools\n\nYou have access to the following functions:\n\n<tools>"
TOOLS_INSTRUCTIONS = (
    "\n\nIf you choose to call a function ONLY reply in the following format with NO suffix:\n\n"
    "<tool_call>\n<function=example_function_name>\n<parameter=example_parameter_1>\nvalue_1\n</parameter>\n"
    "<parameter=example_parameter_2>\nThis is the value for the second parameter\nthat can span\nmultiple lines\n"
    "</parameter>\n</function>\n</tool_call>\n\n<IMPORTANT>\nReminder:\n"
    "- Function calls MUST follow the specified format: an inner <function=...></function> block must be nested "
    "within <tool_call></tool_call> XML tags\n- Required parameters MUST be specified\n"
    "- You may provide optional reasoning for your function call in natural language BEFORE the function call, "
    "but NOT after\n- If there is no function call available, answer the question like normal with your current "
    "knowledge and do not tell the user about function calls\n</IMPORTANT>"
)
ROLES = ("system", "user", "assistant", "tool")


class ChatFormatError(ValueError):
    """A message list the chat format cannot render (bad role, bad part, special tokens in content)."""


def check_plain(text, where: str, allowed: tuple[str, ...] = ()) -> str:
    if not isinstance(text, str):
        raise ChatFormatError(f"{where}: content must be a string, got {type(text).__name__}")
    for tok in SPECIAL_TOKENS:
        if tok in text and tok not in allowed:
            raise ChatFormatError(f"{where}: content contains the special token {tok!r}; it is not allowed in "
                                  f"message text")
    return text


def part_kind(part, where: str) -> str:
    """'image', 'video' or 'text', decided as the template does (by key, then by "type")."""
    if not isinstance(part, dict):
        raise ChatFormatError(f"{where}: a content part must be an object, got {type(part).__name__}")
    if "image" in part or "image_url" in part or part.get("type") == "image":
        return "image"
    if "video" in part or part.get("type") == "video":
        return "video"
    if "text" in part:
        return "text"
    raise ChatFormatError(f"{where}: part type {part.get('type')!r} is not 'text', 'image' or 'video'")


class _VisionCount:
    """Running image/video numbers (the template's image_count / video_count)."""

    def __init__(self, add_vision_id: bool):
        self.add_vision_id, self.images, self.videos = add_vision_id, 0, 0


def render_content(content, where: str, allowed: tuple[str, ...] = (), count: _VisionCount | None = None,
                   is_system: bool = False) -> str:
    """content -> text with one placeholder per image/video (not yet stripped; callers strip as the template
    does). `count` numbers the images and videos (None: a look-ahead pass that does not count)."""
    if isinstance(content, str):
        return check_plain(content, where, allowed)
    if content is None:
        return ""
    if not isinstance(content, (list, tuple)):
        raise ChatFormatError(f"{where}: content must be a string, a list of parts or null, "
                              f"got {type(content).__name__}")
    out = []
    for i, part in enumerate(content):
        kind = part_kind(part, f"{where}[{i}]")
        if kind in ("image", "video") and is_system:
            raise ChatFormatError(f"{where}[{i}]: a system message cannot contain {kind}s")
        if kind == "image":
            if count is not None:
                count.images += 1
                if count.add_vision_id:
                    out.append(f"Picture {count.images}: ")
            out.append(IMAGE_PLACEHOLDER)
        elif kind == "video":
            if count is not None:
                count.videos += 1
                if count.add_vision_id:
                    out.append(f"Video {count.videos}: ")
            out.append(VIDEO_PLACEHOLDER)
        else:
            out.append(check_plain(part["text"], f"{where}[{i}].text", allowed))
    return "".join(out)


def tool_call_parts(call, where: str) -> tuple[str, dict | None]:
    """One tool call (plain or OpenAI style) -> (name, arguments or None when absent); JSON-string arguments
    are decoded."""
    fn = call.get("function", call) if isinstance(call, dict) else None
    if not isinstance(fn, dict):
        raise ChatFormatError(f"{where}: a tool call must be an object")
    name = fn.get("name")
    if not isinstance(name, str) or not name:
        raise ChatFormatError(f"{where}: tool call without a name")
    check_plain(name, f"{where}.name")
    if "arguments" not in fn:
        return name, None
    args = fn["arguments"]
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except json.JSONDecodeError as exc:
            raise ChatFormatError(f"{where}: tool call arguments are not JSON ({exc})") from exc
    if not isinstance(args, dict):
        raise ChatFormatError(f"{where}: tool call arguments must be an object, got {type(args).__name__}")
    for key, value in args.items():
        check_plain(str(key), f"{where}.arguments")
        check_plain(_parameter_text(value), f"{where}.arguments.{key}")
    return name, args


def _parameter_text(value) -> str:
    # the template: objects and arrays as JSON, everything else through Jinja's `string` filter (str())
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _render_tool_call(call, where: str, first: bool, content: str) -> str:
    name, args = tool_call_parts(call, where)
    if first:
        s = ("\n\n" if content.strip() else "") + f"<tool_call>\n<function={name}>\n"
    else:
        s = f"\n<tool_call>\n<function={name}>\n"
    for key, value in (args or {}).items():
        s += f"<parameter={key}>\n{_parameter_text(value)}\n</parameter>\n"
    return s + "</function>\n</tool_call>"


def check_messages(messages) -> None:
    if not isinstance(messages, (list, tuple)) or not messages:
        raise ChatFormatError("messages: expected a non-empty list of messages")
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise ChatFormatError(f"messages[{i}]: a message must be an object, got {type(m).__name__}")
        if m.get("role") not in ROLES:
            raise ChatFormatError(f"messages[{i}]: role {m.get('role')!r} is not system, user, assistant or tool")


def check_tools(tools) -> list | None:
    """Tool definitions as the template receives them: a list of JSON objects whose text holds no special
    token (a description with "<|im_end|>" would end the system turn)."""
    if tools is None:
        return None
    if not isinstance(tools, (list, tuple)):
        raise ChatFormatError(f"tools: expected a list, got {type(tools).__name__}")
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise ChatFormatError(f"tools[{i}]: a tool must be an object, got {type(tool).__name__}")
        try:
            check_plain(json.dumps(tool, ensure_ascii=False), f"tools[{i}]")
        except TypeError as exc:
            raise ChatFormatError(f"tools[{i}]: not JSON-serialisable ({exc})") from exc
    return list(tools)


def last_query_index(messages: list[dict]) -> int:
    """Index of the last user message that is a real query, not only a tool response (template's rule)."""
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].get("role") == "user":
            text = render_content(messages[i].get("content"), f"messages[{i}]", USER_TAGS).strip()
            if not (text.startswith("<tool_response>") and text.endswith("</tool_response>")):
                return i
    raise ChatFormatError("messages: no user query (a user message that is not only a tool response)")


def render_chat(messages: list[dict], tools: list[dict] | None = None, add_generation_prompt: bool = True,
                enable_thinking: bool = True, add_vision_id: bool = False) -> tuple[str, int, int]:
    """Messages (+ tools) -> (prompt text, number of images, number of videos), image/video as placeholders."""
    check_messages(messages)
    tools = check_tools(tools)
    parts: list[str] = []
    system = None
    if messages[0]["role"] == "system":
        system = render_content(messages[0].get("content"), "messages[0]", is_system=True).strip()
    if tools:
        s = "<|im_start|>system\n" + TOOLS_HEADER + "".join("\n" + json.dumps(t, ensure_ascii=False) for t in tools)
        s += "\n</tools>" + TOOLS_INSTRUCTIONS
        if system:
            s += "\n\n" + system
        parts.append(s + "<|im_end|>\n")
    elif system is not None:
        parts.append(f"<|im_start|>system\n{system}<|im_end|>\n")

    last_query = last_query_index(messages)
    count = _VisionCount(add_vision_id)
    for i, m in enumerate(messages):
        role, where = m["role"], f"messages[{i}]"
        allowed = {"assistant": ASSISTANT_TAGS, "user": USER_TAGS}.get(role, ())
        content = render_content(m.get("content"), where, allowed, count, is_system=role == "system").strip()
        if role == "system":
            if i:
                raise ChatFormatError(f"{where}: a system message must be the first message")
        elif role == "user":
            parts.append(f"<|im_start|>user\n{content}<|im_end|>\n")
        elif role == "assistant":
            reasoning = m.get("reasoning_content")
            if isinstance(reasoning, str):
                check_plain(reasoning, where + ".reasoning_content")
            else:
                reasoning = ""
                if "</think>" in content:   # raw model output "<think>\n...\n</think>\n\nanswer"
                    reasoning = content.split("</think>")[0].rstrip("\n").split("<think>")[-1].lstrip("\n")
                    content = content.split("</think>")[-1].lstrip("\n")
            reasoning = reasoning.strip()
            if i > last_query:
                s = f"<|im_start|>assistant\n<think>\n{reasoning}\n</think>\n\n{content}"
            else:
                s = f"<|im_start|>assistant\n{content}"
            calls = m.get("tool_calls") or []
            if not isinstance(calls, (list, tuple)):
                raise ChatFormatError(f"{where}.tool_calls: expected a list")
            for j, call in enumerate(calls):
                s += _render_tool_call(call, f"{where}.tool_calls[{j}]", j == 0, content)
            parts.append(s + "<|im_end|>\n")
        else:   # tool: consecutive responses share one user turn
            s = "<|im_start|>user" if i > 0 and messages[i - 1]["role"] != "tool" else ""
            s += f"\n<tool_response>\n{content}\n</tool_response>"
            if i == len(messages) - 1 or messages[i + 1]["role"] != "tool":
                s += "<|im_end|>\n"
            parts.append(s)
    if add_generation_prompt:
        parts.append("<|im_start|>assistant\n" + ("<think>\n" if enable_thinking else "<think>\n\n</think>\n\n"))
    return "".join(parts), count.images, count.videos


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
