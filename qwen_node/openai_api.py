"""OpenAI-compatible chat-completions API over a chat engine (routes and pure conversions).

POST /v1/chat/completions (stream or not, tools), GET /v1/models, GET /health. Output is
parsed with the agent's own streaming parser: reasoning goes to `reasoning_content`, tool calls
(Qwen3.5 XML or JSON form, converted by the request's tool schemas) to `tool_calls`; a malformed
call is returned as plain content so that the client sees exactly what the model wrote.
"""
from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
import uuid
from typing import Any, Callable, Protocol

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from qwen_stack.qwen_node.agent.output_parser import (
    OutputStreamParser, ParsedToolCall, TextDelta, ThinkingDelta, ToolCallError)


class ChatEngine(Protocol):
    """What the API needs from an engine (LocalChatEngine provides it)."""
    model_dir: str

    def stream(self, chat: list[dict], images: list[Any], tools: list[dict] | None, on_text: Callable[[str], None],
               cancel: Callable[[], bool], max_new_tokens: int, temperature: float, enable_thinking: bool,
               on_prompt_ready: Callable[[], None] | None = None) -> tuple[str, Any]: ...


class RequestError(ValueError):
    """A request the API refuses (HTTP 400); the message says what is wrong."""


def decode_image_url(url: str) -> np.ndarray:
    import cv2

    if not url.startswith("data:image/") or ";base64," not in url:
        raise RequestError("image_url must be a data:image/...;base64, URL (remote URLs are not fetched)")
    try:
        raw = base64.b64decode(url.split(",", 1)[1], validate=True)
    except ValueError:
        raise RequestError("image_url: invalid base64") from None
    bgr = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise RequestError("image_url: not a decodable image")
    return np.ascontiguousarray(bgr[:, :, ::-1])


def openai_to_chat(messages: Any) -> tuple[list[dict], list[np.ndarray]]:
    """OpenAI messages -> engine chat-format dicts and images (in placeholder order)."""
    if not isinstance(messages, list) or not messages:
        raise RequestError("messages must be a non-empty list")
    out, images = [], []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant", "tool"):
            raise RequestError(f"messages[{i}]: role must be system, user, assistant or tool")
        content = m.get("content") or ""
        if isinstance(content, list):
            parts = []
            for j, p in enumerate(content):
                kind = p.get("type") if isinstance(p, dict) else None
                if kind == "text":
                    parts.append({"type": "text", "text": str(p.get("text", ""))})
                elif kind == "image_url":
                    url = p.get("image_url", {})
                    images.append(decode_image_url(url.get("url", "") if isinstance(url, dict) else str(url)))
                    parts.append({"type": "image"})
                else:
                    raise RequestError(f"messages[{i}].content[{j}]: type must be text or image_url")
            content = parts
        elif not isinstance(content, str):
            raise RequestError(f"messages[{i}].content must be a string or a list of parts")
        d: dict[str, Any] = {"role": m["role"], "content": content}
        if m["role"] == "assistant":
            if m.get("reasoning_content"):
                d["reasoning_content"] = str(m["reasoning_content"])
            if m.get("tool_calls"):
                d["tool_calls"] = m["tool_calls"]
        out.append(d)
    return out, images


def tool_schemas(tools: Any) -> dict[str, dict]:
    if tools is None:
        return {}
    if not isinstance(tools, list):
        raise RequestError("tools must be a list")
    out = {}
    for i, t in enumerate(tools):
        fn = t.get("function") if isinstance(t, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise RequestError(f"tools[{i}]: expected {{'type': 'function', 'function': {{'name': ...}}}}")
        params = fn.get("parameters") or {"type": "object", "properties": {}}
        out[fn["name"]] = params
    return out


class TurnAssembler:
    """Feeds model text through the parser and produces OpenAI deltas."""

    def __init__(self, schemas: dict[str, dict], start_in_thinking: bool):
        self.parser = OutputStreamParser(schemas, start_in_thinking)
        self.reasoning, self.content, self.tool_calls = "", "", []

    def _convert(self, events) -> list[dict]:
        deltas = []
        for ev in events:
            if isinstance(ev, ThinkingDelta):
                self.reasoning += ev.text
                deltas.append({"reasoning_content": ev.text})
            elif isinstance(ev, TextDelta):
                self.content += ev.text
                deltas.append({"content": ev.text})
            elif isinstance(ev, ParsedToolCall):
                call = {"index": len(self.tool_calls), "id": f"call_{uuid.uuid4().hex[:16]}", "type": "function",
                        "function": {"name": ev.name, "arguments": json.dumps(ev.arguments)}}
                self.tool_calls.append(call)
                deltas.append({"tool_calls": [call]})
            elif isinstance(ev, ToolCallError):
                # what the model wrote stays visible to the client as content
                if ev.unshown_text:
                    self.content += ev.unshown_text
                    deltas.append({"content": ev.unshown_text})
        return deltas

    def feed(self, text: str) -> list[dict]:
        return self._convert(self.parser.feed(text))

    def finish(self) -> list[dict]:
        return self._convert(self.parser.finish())


def _finish_reason(engine_reason: str, has_calls: bool) -> str:
    if has_calls:
        return "tool_calls"
    return "length" if engine_reason == "length" else "stop"


def create_app(engine: ChatEngine, model_name: str, default_max_tokens: int = 1024, api_key: str | None = None):
    app = FastAPI(title="qwen-stack serve")

    def auth_error(request: Request):
        if api_key and request.headers.get("authorization") != f"Bearer {api_key}":
            return JSONResponse({"error": {"message": "missing or wrong API key", "type": "auth"}}, status_code=401)
        return None

    @app.get("/health")
    def health():
        return {"status": "ok", "model": model_name}

    @app.get("/v1/models")
    def models(request: Request):
        return auth_error(request) or {"object": "list", "data": [{"id": model_name, "object": "model",
                                                                    "owned_by": "qwen-stack"}]}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        denied = auth_error(request)
        if denied:
            return denied
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise RequestError("body must be a JSON object")
            chat, images = openai_to_chat(body.get("messages"))
            tools = body.get("tools")
            schemas = tool_schemas(tools)
            max_tokens = int(body.get("max_tokens") or body.get("max_completion_tokens") or default_max_tokens)
            temperature = float(body.get("temperature") or 0.0)
            if max_tokens <= 0 or temperature < 0:
                raise RequestError("max_tokens must be > 0 and temperature >= 0")
            thinking = bool((body.get("chat_template_kwargs") or {}).get("enable_thinking", True))
        except (RequestError, ValueError, TypeError) as exc:
            return JSONResponse({"error": {"message": str(exc), "type": "invalid_request_error"}}, status_code=400)
        rid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        assembler = TurnAssembler(schemas, start_in_thinking=thinking)
        cancel = threading.Event()

        def run(on_delta: Callable[[list[dict]], None]):
            return engine.stream(chat, images, tools, lambda t: on_delta(assembler.feed(t)), cancel.is_set,
                                 max_tokens, temperature, thinking)

        def chunk(delta: dict, finish: str | None = None, usage=None) -> str:
            obj = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model_name,
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            if usage is not None:
                obj["usage"] = usage
            return f"data: {json.dumps(obj)}\n\n"

        if body.get("stream"):
            loop = asyncio.get_running_loop()
            queue: asyncio.Queue = asyncio.Queue()

            def worker():
                try:
                    _, stats = run(lambda ds: [loop.call_soon_threadsafe(queue.put_nowait, ("delta", d)) for d in ds])
                    for d in assembler.finish():
                        loop.call_soon_threadsafe(queue.put_nowait, ("delta", d))
                    loop.call_soon_threadsafe(queue.put_nowait, ("done", stats))
                except Exception as exc:  # noqa: BLE001 - reported in the stream
                    loop.call_soon_threadsafe(queue.put_nowait, ("error", f"{type(exc).__name__}: {exc}"))

            async def events():
                threading.Thread(target=worker, daemon=True).start()
                try:
                    yield chunk({"role": "assistant"})
                    while True:
                        kind, item = await queue.get()
                        if kind == "delta":
                            yield chunk(item)
                        elif kind == "error":
                            yield f"data: {json.dumps({'error': {'message': item}})}\n\n"
                            break
                        else:
                            usage = {"prompt_tokens": item.prompt_tokens, "completion_tokens": item.completion_tokens,
                                     "total_tokens": item.prompt_tokens + item.completion_tokens}
                            yield chunk({}, _finish_reason(item.finish_reason, bool(assembler.tool_calls)), usage)
                            break
                    yield "data: [DONE]\n\n"
                finally:
                    cancel.set()  # client went away or stream ended: stop generating

            return StreamingResponse(events(), media_type="text/event-stream")

        from starlette.concurrency import run_in_threadpool

        try:
            _, stats = await run_in_threadpool(run, lambda ds: None)
        except Exception as exc:  # noqa: BLE001
            return JSONResponse({"error": {"message": f"{type(exc).__name__}: {exc}", "type": "server_error"}},
                                status_code=500)
        assembler.finish()
        message: dict[str, Any] = {"role": "assistant", "content": assembler.content or None}
        if assembler.reasoning:
            message["reasoning_content"] = assembler.reasoning
        if assembler.tool_calls:
            message["tool_calls"] = [{k: v for k, v in c.items() if k != "index"} for c in assembler.tool_calls]
        return {"id": rid, "object": "chat.completion", "created": created, "model": model_name,
                "choices": [{"index": 0, "message": message,
                             "finish_reason": _finish_reason(stats.finish_reason, bool(assembler.tool_calls))}],
                "usage": {"prompt_tokens": stats.prompt_tokens, "completion_tokens": stats.completion_tokens,
                          "total_tokens": stats.prompt_tokens + stats.completion_tokens}}

    return app
