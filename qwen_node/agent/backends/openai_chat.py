"""`openai` backend: any OpenAI-compatible chat-completions server (vLLM, SGLang, NIM, DashScope,
`qwen-stack serve`), streaming.

Tools go either natively (`tools=` in the request; the server parses the calls) or in the prompt
(the tool list in the system message in Qwen3.5's own wording; the raw output comes back as
content). Either way the streamed answer is turned back into Qwen3.5 output text
(<think>…</think>, text, <tool_call>{"name": …, "arguments": …}</tool_call>) so that the agent's
one parser decides what is a valid call. The API key comes from the environment variable named
by `openai_api_key_env`, never from a file.
"""
from __future__ import annotations

import base64
import json
import logging
import os
from typing import Any, Callable, Sequence

from qwen_stack.qwen_node.agent.output_parser import parse_output
from qwen_stack.qwen_node.agent.planner import CancelToken, ChatMessage

LOG = logging.getLogger(__name__)


def encode_jpeg_data_url(rgb) -> str:
    from qwen_stack.images import encode_jpeg

    jpeg = encode_jpeg(rgb, 85)
    if jpeg is None:
        raise ValueError("frame could not be JPEG-encoded")
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()


def tools_in_prompt(tools: list[dict]) -> str:
    from qwen_stack.qwen_node.engine.chat import TOOLS_HEADER, TOOLS_INSTRUCTIONS

    return TOOLS_HEADER + "".join("\n" + json.dumps(t, ensure_ascii=False) for t in tools) + "\n</tools>" + TOOLS_INSTRUCTIONS


def to_openai_messages(messages: Sequence[ChatMessage], tools: list[dict], native: bool) -> list[dict]:
    """Our conversation -> OpenAI messages (pure)."""
    from qwen_stack.qwen_node.agent.backends.local import _KEEP_IN_ASSISTANT, strip_special_tokens

    schemas = {t["function"]["name"]: t["function"].get("parameters", {}) for t in tools}
    out: list[dict] = []
    pending_ids: list[str] = []
    # control tokens never travel in message text (a garbled model turn or a tool result must not
    # inject them; servers refuse them)
    messages = [ChatMessage(m.role, strip_special_tokens(m.content, _KEEP_IN_ASSISTANT if m.role == "assistant" else ()),
                            m.images, m.folded) for m in messages]
    for turn, m in enumerate(messages):
        if m.role == "system":
            text = m.content if native or not tools else tools_in_prompt(tools) + "\n\n" + m.content
            out.append({"role": "system", "content": text})
        elif m.role == "user":
            if m.images:
                parts = [{"type": "image_url", "image_url": {"url": encode_jpeg_data_url(f)}} for f in m.images]
                out.append({"role": "user", "content": parts + [{"type": "text", "text": m.content}]})
            else:
                out.append({"role": "user", "content": m.content})
        elif m.role == "assistant":
            if not native:
                out.append({"role": "assistant", "content": m.content})
                continue
            parsed = parse_output(m.content, schemas)
            msg: dict[str, Any] = {"role": "assistant", "content": parsed.text.strip() or None}
            pending_ids = []
            if parsed.calls and not parsed.errors:
                msg["tool_calls"] = []
                for k, c in enumerate(parsed.calls):
                    cid = f"call_{turn}_{k}"
                    pending_ids.append(cid)
                    msg["tool_calls"].append({"id": cid, "type": "function",
                                              "function": {"name": c.name, "arguments": json.dumps(c.arguments)}})
            elif parsed.errors:  # show the server what the model wrote, so the error response makes sense
                msg["content"] = m.content
            out.append(msg)
        else:  # tool
            if native and pending_ids:
                out.append({"role": "tool", "tool_call_id": pending_ids.pop(0), "content": m.content})
            elif native:   # an answer to a malformed turn: no call id to attach it to
                out.append({"role": "user", "content": f"Tool response (your last output had no valid call):\n{m.content}"})
            else:          # prompt mode: the server's chat template renders it as a <tool_response> block
                out.append({"role": "tool", "content": m.content})
    return out


class QwenTextFromDeltas:
    """Streamed OpenAI deltas -> Qwen3.5 output text, chunk by chunk."""

    def __init__(self, on_text: Callable[[str], None]):
        self.on_text = on_text
        self.in_think = False
        self.calls: dict[int, dict] = {}
        self.text = ""

    def _emit(self, s: str) -> None:
        if s:
            self.text += s
            self.on_text(s)

    def delta(self, d: dict) -> None:
        reasoning = d.get("reasoning_content") or d.get("reasoning")
        if reasoning:
            if not self.in_think:
                self._emit("<think>")
                self.in_think = True
            self._emit(reasoning)
        if d.get("content") or d.get("tool_calls"):
            self._close_think()
        if d.get("content"):
            self._emit(d["content"])
        for tc in d.get("tool_calls") or []:
            slot = self.calls.setdefault(int(tc.get("index", len(self.calls))), {"name": "", "arguments": ""})
            fn = tc.get("function") or {}
            slot["name"] += fn.get("name") or ""
            slot["arguments"] += fn.get("arguments") or ""

    def _close_think(self) -> None:
        if self.in_think:
            self._emit("</think>\n\n")
            self.in_think = False

    def finish(self) -> None:
        self._close_think()
        for i in sorted(self.calls):
            c = self.calls[i]
            try:
                args = json.loads(c["arguments"]) if c["arguments"].strip() else {}
                body = json.dumps({"name": c["name"], "arguments": args})
            except json.JSONDecodeError:  # left for the parser to reject
                body = '{"name": %s, "arguments": %s}' % (json.dumps(c["name"]), c["arguments"])
            self._emit(f"\n<tool_call>\n{body}\n</tool_call>")


class OpenAIChatBackend:
    is_model = True
    start_in_thinking = False   # the server separates reasoning; QwenTextFromDeltas re-opens <think>

    def __init__(self, base_url: str, model: str, api_key: str | None, native_tools: bool, max_tokens: int,
                 temperature: float, enable_thinking: bool, timeout_s: float):
        self.base_url, self.model, self.api_key = base_url.rstrip("/"), model, api_key
        self.native_tools, self.max_tokens, self.temperature = native_tools, max_tokens, temperature
        self.enable_thinking, self.timeout_s = enable_thinking, timeout_s
        self.name = f"openai:{self.base_url}:{model}"
        self.last_usage: dict = {}
        self.last_prompt_images = 0

    @classmethod
    def from_settings(cls, s) -> "OpenAIChatBackend":
        key = os.environ.get(s.openai_api_key_env) or None
        if key is None:
            LOG.info("openai backend: %s is not set; sending no API key", s.openai_api_key_env)
        return cls(s.openai_base_url, s.openai_model, key, s.openai_tools_mode == "native", s.max_new_tokens,
                   s.temperature, s.enable_thinking, s.openai_timeout_s)

    def request_body(self, messages: Sequence[ChatMessage], tools: list[dict]) -> dict:
        body: dict[str, Any] = {"model": self.model, "stream": True, "max_tokens": self.max_tokens,
                                "temperature": self.temperature,
                                "messages": to_openai_messages(messages, tools, self.native_tools),
                                "chat_template_kwargs": {"enable_thinking": self.enable_thinking},
                                "stream_options": {"include_usage": True}}
        if self.native_tools and tools:
            body["tools"] = tools
        return body

    def generate(self, messages: Sequence[ChatMessage], tools: list[dict], on_text: Callable[[str], None],
                 cancel: CancelToken) -> str:
        import httpx

        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        self.last_prompt_images = sum(len(m.images) for m in messages)
        out = QwenTextFromDeltas(on_text)
        with httpx.Client(timeout=self.timeout_s) as client:
            with client.stream("POST", f"{self.base_url}/chat/completions", json=self.request_body(messages, tools),
                               headers=headers) as resp:
                if resp.status_code != 200:
                    resp.read()
                    raise RuntimeError(f"server answered {resp.status_code}: {resp.text[:300]}")
                for line in resp.iter_lines():
                    if cancel.cancelled:
                        break   # closing the stream tells the server to stop
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    obj = json.loads(data)
                    if "error" in obj:
                        raise RuntimeError(f"server error: {obj['error']}")
                    if obj.get("usage"):
                        self.last_usage = obj["usage"]
                    for choice in obj.get("choices") or []:
                        out.delta(choice.get("delta") or {})
        out.finish()
        return out.text
