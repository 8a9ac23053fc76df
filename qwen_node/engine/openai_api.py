"""OpenAI-compatible chat-completions API over a chat engine (routes and pure conversions).

POST /v1/chat/completions (stream or not, tools), GET /v1/models, GET /health. Output is
parsed with the agent's own streaming parser: reasoning goes to `reasoning_content`, tool calls
(Qwen3.5 XML or JSON form, converted by the request's tool schemas) to `tool_calls`; a malformed
call is returned as plain content so that the client sees exactly what the model wrote.

Every request field is either honoured or refused (HTTP 400 naming it), never silently ignored:
another model name is 404 `model_not_found`, `n` > 1 is 400, `max_tokens` must fit the context.
tool_choice: "none" leaves the tools out of the prompt; "auto" lets the model choose; "required"
and a named function make the answer start with a call (after the reasoning, when thinking is on)
and a turn without a valid call is an error, never a silent plain answer. A client that goes away
cancels its generation, streaming or not.
"""
from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Protocol

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.requests import ClientDisconnect

from qwen_stack.qwen_node.agent.output_parser import (
    OutputStreamParser, ParsedToolCall, TextDelta, ThinkingDelta, ToolCallError)
from qwen_stack.qwen_node.engine.generate import ContextLengthError


class ChatEngine(Protocol):
    """What the API needs from an engine (LocalChatEngine provides it)."""
    model_dir: str
    context_length: int             # prompt + generated tokens the model supports

    def stream(self, chat: list[dict], images: list[Any], tools: list[dict] | None, on_text: Callable[[str], None],
               cancel: Callable[[], bool], max_new_tokens: int, temperature: float, enable_thinking: bool,
               on_prompt_ready: Callable[[], None] | None = None, *, prefix: str = "",
               stop_strings: tuple[str, ...] = (), top_p: float = 1.0, top_k: int = 0,
               seed: int | None = None) -> tuple[str, Any]: ...


class RequestError(ValueError):
    """A request the API refuses; the message says what is wrong (status 400 unless stated)."""

    def __init__(self, message: str, param: str | None = None, status: int = 400,
                 code: str | None = None, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.param, self.status, self.code, self.kind = param, status, code, kind

    def response(self) -> JSONResponse:
        return error_response(str(self), self.status, self.kind, self.param, self.code)


class TurnError(RuntimeError):
    """The model's turn broke a rule the request set (tool_choice required or named without a valid call)."""


def error_response(message: str, status: int, kind: str, param: str | None = None, code: str | None = None):
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": code}},
                        status_code=status)


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
        raise RequestError("messages must be a non-empty list", "messages")
    out, images = [], []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("system", "developer", "user", "assistant", "tool"):
            raise RequestError(f"messages[{i}]: role must be system, developer, user, assistant or tool", "messages")
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
                    raise RequestError(f"messages[{i}].content[{j}]: type must be text or image_url", "messages")
            content = parts
        elif not isinstance(content, str):
            raise RequestError(f"messages[{i}].content must be a string or a list of parts", "messages")
        # "developer" is the newer name of the system role
        d: dict[str, Any] = {"role": "system" if m["role"] == "developer" else m["role"], "content": content}
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
        raise RequestError("tools must be a list", "tools")
    out = {}
    for i, t in enumerate(tools):
        fn = t.get("function") if isinstance(t, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or t.get("type", "function") != "function":
            raise RequestError(f"tools[{i}]: expected {{'type': 'function', 'function': {{'name': ...}}}}", "tools")
        params = fn.get("parameters") or {"type": "object", "properties": {}}
        out[fn["name"]] = params
    return out


# fields that only label a request (no effect on the answer), accepted as OpenAI accepts them
_LABELS = ("user", "metadata", "store", "service_tier")
# fields honoured below
_HONOURED = ("messages", "model", "stream", "stream_options", "max_tokens", "max_completion_tokens", "temperature",
             "top_p", "top_k", "seed", "stop", "n", "tools", "tool_choice", "parallel_tool_calls",
             "chat_template_kwargs", "presence_penalty", "frequency_penalty", "logit_bias", "logprobs",
             "response_format")


@dataclass
class ChatRequest:
    """A checked chat-completions request."""
    chat: list[dict]
    images: list[np.ndarray]
    tools: list[dict] | None            # sent to the engine (None with tool_choice "none")
    schemas: dict[str, dict]            # for parsing the output's calls ({} with tool_choice "none")
    tool_choice: str                    # "none", "auto", "required" or "function" (a named one)
    forced_name: str | None             # the function a named tool_choice calls
    parallel_tool_calls: bool           # False: the turn ends after its first call
    max_tokens: int
    max_tokens_given: bool              # False: the server's default, cut to what fits after the prompt
    temperature: float
    top_p: float
    top_k: int
    seed: int | None
    stop: tuple[str, ...]
    stream: bool
    include_usage: bool                 # streaming: a final chunk carries the usage
    thinking: bool


def _number(body: dict, name: str, default, kind=float, low=None, high=None):
    value = body.get(name)
    if value is None:
        return default
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or (kind is int and not float(value).is_integer())):
        raise RequestError(f"{name} must be {'an integer' if kind is int else 'a number'}, got {value!r}", name)
    value = kind(value)
    if (low is not None and value < low) or (high is not None and value > high):
        raise RequestError(f"{name}={value} is outside [{low}, {'any' if high is None else high}]", name)
    return value


def _flag(body: dict, name: str, default: bool) -> bool:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise RequestError(f"{name} must be true or false, got {value!r}", name)
    return value


def _top_p(body: dict) -> float:
    top_p = _number(body, "top_p", 1.0, low=0.0, high=1.0)
    if top_p == 0:
        raise RequestError("top_p must be in (0, 1]", "top_p")
    return top_p


def parse_request(body: Any, model_name: str, default_max_tokens: int, context_length: int | None) -> ChatRequest:
    """A chat-completions body -> ChatRequest, or RequestError naming the offending field."""
    if not isinstance(body, dict):
        raise RequestError("body must be a JSON object")
    unknown = sorted(set(body) - set(_HONOURED) - set(_LABELS))
    if unknown:
        raise RequestError(f"unsupported field {unknown[0]!r} (this server honours: {', '.join(_HONOURED)})",
                           unknown[0])
    model = body.get("model")
    if model is not None and model != model_name:
        raise RequestError(f"The model `{model}` does not exist (this server serves `{model_name}`).", "model",
                           status=404, code="model_not_found")
    if _number(body, "n", 1, int) != 1:
        raise RequestError("n must be 1 (one choice per request)", "n")
    for name in ("presence_penalty", "frequency_penalty"):
        if _number(body, name, 0.0) != 0:
            raise RequestError(f"{name} is not supported (only 0)", name)
    if body.get("logit_bias"):
        raise RequestError("logit_bias is not supported", "logit_bias")
    if body.get("logprobs"):
        raise RequestError("logprobs is not supported", "logprobs")
    fmt = body.get("response_format")
    if fmt is not None and fmt != {"type": "text"}:
        raise RequestError("response_format: only {'type': 'text'} is supported", "response_format")

    chat, images = openai_to_chat(body.get("messages"))
    tools = body.get("tools") or None
    schemas = tool_schemas(tools)
    choice, forced = "auto" if tools else "none", None
    raw_choice = body.get("tool_choice")
    if raw_choice is not None:
        if raw_choice in ("none", "auto", "required"):
            choice = raw_choice
        elif (isinstance(raw_choice, dict) and raw_choice.get("type") == "function"
              and isinstance(raw_choice.get("function"), dict) and isinstance(raw_choice["function"].get("name"), str)):
            choice, forced = "function", raw_choice["function"]["name"]
        else:
            raise RequestError("tool_choice must be 'none', 'auto', 'required' or "
                               "{'type': 'function', 'function': {'name': ...}}", "tool_choice")
        if choice in ("required", "function") and not tools:
            raise RequestError(f"tool_choice {raw_choice!r} needs tools", "tool_choice")
        if forced is not None and forced not in schemas:
            raise RequestError(f"tool_choice names {forced!r}, which is not among the tools", "tool_choice")
    if choice == "none":
        tools, schemas = None, {}

    max_tokens = _number(body, "max_tokens", None, int, low=1)
    if max_tokens is None:
        max_tokens = _number(body, "max_completion_tokens", None, int, low=1)
    given = max_tokens is not None
    max_tokens = max_tokens if given else default_max_tokens
    if context_length is not None and max_tokens >= context_length:
        raise RequestError(f"max_tokens={max_tokens} does not fit the model's context of {context_length} tokens "
                           f"(prompt included)", "max_tokens")
    stop = body.get("stop")
    stop = [stop] if isinstance(stop, str) else stop
    if stop is not None and (not isinstance(stop, list) or len(stop) > 4
                             or not all(isinstance(s, str) and s for s in stop)):
        raise RequestError("stop must be a non-empty string or a list of up to 4 of them", "stop")
    kwargs = body.get("chat_template_kwargs") or {}
    if not isinstance(kwargs, dict) or set(kwargs) - {"enable_thinking"}:
        raise RequestError("chat_template_kwargs: only enable_thinking is supported", "chat_template_kwargs")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict) or set(options) - {"include_usage"}:
        raise RequestError("stream_options: only include_usage is supported", "stream_options")
    return ChatRequest(
        chat=chat, images=images, tools=tools, schemas=schemas, tool_choice=choice, forced_name=forced,
        parallel_tool_calls=_flag(body, "parallel_tool_calls", True), max_tokens=max_tokens, max_tokens_given=given,
        temperature=_number(body, "temperature", 0.0, low=0.0, high=2.0),
        top_p=_top_p(body), top_k=_number(body, "top_k", 0, int, low=0),
        seed=_number(body, "seed", None, int), stop=tuple(stop or ()), stream=_flag(body, "stream", False),
        include_usage=_flag(options, "include_usage", False), thinking=_flag(kwargs, "enable_thinking", True))


class TurnAssembler:
    """Feeds model text through the parser and produces OpenAI deltas."""

    def __init__(self, schemas: dict[str, dict], start_in_thinking: bool):
        self.parser = OutputStreamParser(schemas, start_in_thinking)
        self.reasoning, self.content, self.tool_calls = "", "", []
        self.invalid_calls: list[str] = []      # why calls the model wrote were not valid

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
                self.invalid_calls.append(ev.message)
                # what the model wrote stays visible to the client as content
                if ev.unshown_text:
                    self.content += ev.unshown_text
                    deltas.append({"content": ev.unshown_text})
        return deltas

    def feed(self, text: str) -> list[dict]:
        return self._convert(self.parser.feed(text))

    def finish(self) -> list[dict]:
        return self._convert(self.parser.finish())


@dataclass
class TurnResult:
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str                  # the engine's: stop_token, stop_string, length, cancelled


# the start of a call the model must continue (tool_choice required / named)
CALL_START = "<tool_call>\n<function="
# room for the text that joins the reasoning to a forced call when it is prefilled again
_BRIDGE_TOKENS = 16


def run_turn(engine: ChatEngine, req: ChatRequest, emit: Callable[[str], None],
             cancel: Callable[[], bool]) -> TurnResult:
    """Generate one assistant turn as the request's tool_choice demands; emit() gets all model-side text
    (forced call starts included), in order. Raises whatever the engine raises."""
    forced = None
    if req.tool_choice == "required":
        forced = CALL_START
    elif req.tool_choice == "function":
        forced = f"{CALL_START}{req.forced_name}>\n"
    # a named choice is one call; parallel_tool_calls=false: the first call ends the turn
    end_at_call = ("</tool_call>",) if req.tools and (forced and req.forced_name or not req.parallel_tool_calls) else ()

    def step(prefix: str, budget: int, stops: tuple[str, ...]):
        def go(n):
            return engine.stream(req.chat, req.images, req.tools, emit, cancel, n, req.temperature, req.thinking,
                                 prefix=prefix, stop_strings=req.stop + stops, top_p=req.top_p, top_k=req.top_k,
                                 seed=req.seed)
        try:
            return go(budget)
        except ContextLengthError as exc:
            # no max_tokens in the request: the default shrinks to what fits after the prompt (as vLLM does)
            if req.max_tokens_given or exc.prompt_tokens >= exc.context:
                raise
            return go(exc.context - exc.prompt_tokens)

    def closed(stats) -> str:
        if stats.finish_reason == "stop_string" and stats.stop_string in end_at_call:
            emit(stats.stop_string)     # the call's closing tag the stop cut off
        return stats.finish_reason

    if forced is None or not req.thinking:
        if forced:
            emit(forced)
        _, st = step(forced or "", req.max_tokens, end_at_call)
        return TurnResult(st.prompt_tokens, st.completion_tokens, closed(st))
    # thinking on: reason freely up to </think>, then the answer starts with the call
    reasoning, st1 = step("", req.max_tokens, ("</think>",))
    if st1.finish_reason in ("length", "cancelled") or (st1.finish_reason == "stop_string"
                                                        and st1.stop_string in req.stop):
        return TurnResult(st1.prompt_tokens, st1.completion_tokens, st1.finish_reason)
    budget = req.max_tokens - st1.completion_tokens - _BRIDGE_TOKENS
    bridge = "\n</think>\n\n" + forced if reasoning and not reasoning.endswith("\n") else "</think>\n\n" + forced
    emit(bridge)
    if budget < 1:
        return TurnResult(st1.prompt_tokens, st1.completion_tokens, "length")
    _, st2 = step(reasoning + bridge, budget, end_at_call)
    return TurnResult(st1.prompt_tokens, st1.completion_tokens + st2.completion_tokens, closed(st2))


def check_tool_choice(req: ChatRequest, assembler: TurnAssembler, finish_reason: str) -> None:
    """A turn that ran to its end under tool_choice required / named must hold a valid call."""
    if req.tool_choice not in ("required", "function") or finish_reason in ("length", "cancelled"):
        return
    names = [c["function"]["name"] for c in assembler.tool_calls]
    if not names or (req.forced_name and set(names) != {req.forced_name}):
        why = "; ".join(assembler.invalid_calls) or "no call"
        raise TurnError(f"tool_choice {req.forced_name or 'required'}: the model's answer holds no valid call "
                        f"({why})")


def _finish_reason(engine_reason: str, has_calls: bool) -> str:
    if has_calls:
        return "tool_calls"
    return "length" if engine_reason == "length" else "stop"


def _usage(turn: TurnResult) -> dict:
    return {"prompt_tokens": turn.prompt_tokens, "completion_tokens": turn.completion_tokens,
            "total_tokens": turn.prompt_tokens + turn.completion_tokens}


def _engine_error(exc: Exception, started: bool) -> JSONResponse:
    """An engine exception as a response: a ValueError before any output is the request's fault (a prompt
    over the context, a message the chat format refuses); anything else is the server's."""
    if isinstance(exc, ValueError) and not started:
        return error_response(str(exc), 400, "invalid_request_error")
    return error_response(f"{type(exc).__name__}: {exc}", 500, "server_error")


# how often a waiting request checks whether its client went away
DISCONNECT_POLL_S = 0.2


def create_app(engine: ChatEngine, model_name: str, default_max_tokens: int = 1024, api_key: str | None = None):
    app = FastAPI(title="qwen-stack serve")

    def auth_error(request: Request):
        if api_key and request.headers.get("authorization") != f"Bearer {api_key}":
            return error_response("missing or wrong API key", 401, "authentication_error", code="invalid_api_key")
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
            try:
                body = await request.json()
            except ValueError:
                raise RequestError("body is not valid JSON") from None
            except ClientDisconnect:       # gone before its request was read: nothing to generate
                return Response(status_code=499)
            req = parse_request(body, model_name, default_max_tokens, getattr(engine, "context_length", None))
        except RequestError as exc:
            return exc.response()
        rid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        assembler = TurnAssembler(req.schemas, start_in_thinking=req.thinking)
        cancel = threading.Event()
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()      # ("delta", d) ... then ("done", TurnResult) or ("error", exc)

        def put(kind, item):
            loop.call_soon_threadsafe(events.put_nowait, (kind, item))

        def worker():
            try:
                turn = run_turn(engine, req, lambda t: [put("delta", d) for d in assembler.feed(t)], cancel.is_set)
                for d in assembler.finish():
                    put("delta", d)
                check_tool_choice(req, assembler, turn.finish_reason)
                put("done", turn)
            except Exception as exc:  # noqa: BLE001 - answered to the client
                put("error", exc)

        async def watch_disconnect():
            """Until the response is under way: a client that goes away cancels the generation (once streaming,
            Starlette notices and closes the stream, whose `finally` cancels)."""
            while not cancel.is_set():
                if await request.is_disconnected():
                    cancel.set()
                    return
                await asyncio.sleep(DISCONNECT_POLL_S)

        threading.Thread(target=worker, daemon=True, name=f"generate-{rid}").start()
        watcher = asyncio.ensure_future(watch_disconnect())

        def sse(obj: dict) -> str:
            return f"data: {json.dumps(obj)}\n\n"

        def chunk(delta: dict | None, finish: str | None = None, usage: dict | None = None) -> str:
            choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
            obj: dict[str, Any] = {"id": rid, "object": "chat.completion.chunk", "created": created,
                                   "model": model_name, "choices": choices}
            if usage is not None:
                obj["usage"] = usage
            return sse(obj)

        if req.stream:
            try:
                first = await events.get()      # errors before any output still get a proper status code
            finally:
                watcher.cancel()
            if first[0] == "error":
                return _engine_error(first[1], started=False)

            async def stream_events():
                try:
                    yield chunk({"role": "assistant"})
                    kind, item = first
                    while True:
                        if kind == "delta":
                            yield chunk(item)
                        elif kind == "error":
                            yield sse({"error": {"message": f"{type(item).__name__}: {item}", "type": "server_error"}})
                            break
                        else:
                            yield chunk({}, _finish_reason(item.finish_reason, bool(assembler.tool_calls)))
                            if req.include_usage:       # OpenAI's form: one more chunk, no choices
                                yield chunk(None, usage=_usage(item))
                            break
                        kind, item = await events.get()
                    yield "data: [DONE]\n\n"
                finally:
                    cancel.set()  # client went away or stream ended: stop generating

            return StreamingResponse(stream_events(), media_type="text/event-stream")

        started = False
        try:
            while True:
                kind, item = await events.get()
                if kind == "delta":
                    started = True
                elif kind == "error":
                    return _engine_error(item, started)
                else:
                    turn = item
                    break
        finally:
            watcher.cancel()
        message: dict[str, Any] = {"role": "assistant", "content": assembler.content or None}
        if assembler.reasoning:
            message["reasoning_content"] = assembler.reasoning
        if assembler.tool_calls:
            message["tool_calls"] = [{k: v for k, v in c.items() if k != "index"} for c in assembler.tool_calls]
        return {"id": rid, "object": "chat.completion", "created": created, "model": model_name,
                "choices": [{"index": 0, "message": message,
                             "finish_reason": _finish_reason(turn.finish_reason, bool(assembler.tool_calls))}],
                "usage": _usage(turn)}

    return app
