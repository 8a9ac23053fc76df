"""`qwen-stack serve` through the official `openai` Python client: streaming and not, tools with every
tool_choice, request limits (max_tokens, n, model name, unknown fields), cancellation on disconnect.

First against a model double that honours prefixes and stop strings the way the engine does (exact
expectations), then the real engine on a tiny random checkpoint in a `qwen-stack serve` subprocess
(prompt-level effects: usage.prompt_tokens)."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import httpx
import openai
import pytest

from qwen_stack.qwen_node.agent.backends.local import GenerationStats
from qwen_stack.qwen_node.engine.openai_api import create_app

from .serve_process import app_in_thread, serving

DRIVE = {"type": "function", "function": {"name": "drive_distance", "description": "drive", "parameters": {
    "type": "object", "properties": {"distance": {"type": "number"}}, "required": ["distance"]}}}
STOP = {"type": "function", "function": {"name": "stop", "description": "stop now",
                                         "parameters": {"type": "object", "properties": {}}}}
TOOLS = [DRIVE, STOP]
CALL_DRIVE = "<tool_call>\n<function=drive_distance>\n<parameter=distance>\n1.5\n</parameter>\n</function>\n</tool_call>"
USER = [{"role": "user", "content": "Drive 1.5 m"}]


class ModelDouble:
    """Stands in for LocalChatEngine. `reply(prefix, thinking)` is what the model writes after the prompt (+ prefix);
    like the engine it streams that in small chunks, cuts it at the first stop string, honours max_new_tokens
    (one token = 4 characters here) and cancel."""
    model_dir = "model-double"
    context_length = 4096

    def __init__(self):
        self.calls: list[dict] = []
        self.reply = lambda prefix, thinking: "ok"
        self.delay_s = 0.0
        self.cancelled = threading.Event()

    def stream(self, chat, images, tools, on_text, cancel, max_new_tokens, temperature, enable_thinking,
               on_prompt_ready=None, *, prefix="", stop_strings=(), top_p=1.0, top_k=0, seed=None):
        self.calls.append(dict(tools=tools, prefix=prefix, stop=tuple(stop_strings), max_new_tokens=max_new_tokens,
                               thinking=enable_thinking, temperature=temperature, top_p=top_p, top_k=top_k, seed=seed))
        text, reason, stop_string = self.reply(prefix, enable_thinking), "stop_token", ""
        hits = [(text.find(s), s) for s in stop_strings if s in text]
        if hits:
            at, stop_string = min(hits)
            text, reason = text[:at], "stop_string"
        if len(text) > 4 * max_new_tokens:
            text, reason = text[:4 * max_new_tokens], "length"
        sent = ""
        for i in range(0, len(text), 4):
            if cancel():
                self.cancelled.set()
                reason = "cancelled"
                break
            time.sleep(self.delay_s)
            on_text(text[i:i + 4])
            sent += text[i:i + 4]
        return sent, GenerationStats(prompt_tokens=10, completion_tokens=(len(sent) + 3) // 4, finish_reason=reason,
                                     stop_string=stop_string)


@pytest.fixture(scope="module")
def served():
    model = ModelDouble()
    with app_in_thread(create_app(model, "qwen3.5")) as url:
        yield url, model


@pytest.fixture
def double(served):
    url, model = served
    model.calls.clear()
    model.reply, model.delay_s = (lambda prefix, thinking: "ok"), 0.0
    model.cancelled.clear()
    return openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=30), model


def create(client, stream, **kw):
    """One chat completion; streamed answers are assembled into (content, reasoning, calls, finish, chunks)."""
    kw.setdefault("model", "qwen3.5")
    kw.setdefault("messages", USER)
    if not stream:
        r = client.chat.completions.create(**kw)
        m = r.choices[0].message
        calls = [(c.function.name, json.loads(c.function.arguments)) for c in m.tool_calls or []]
        return m.content, getattr(m, "reasoning_content", None), calls, r.choices[0].finish_reason, r
    content, reasoning, calls, finish, chunks = "", "", [], None, []
    for ch in client.chat.completions.create(stream=True, **kw):
        chunks.append(ch)
        for c in ch.choices:
            content += c.delta.content or ""
            reasoning += getattr(c.delta, "reasoning_content", None) or ""
            calls += [(t.function.name, json.loads(t.function.arguments)) for t in c.delta.tool_calls or []]
            finish = c.finish_reason or finish
    return content or None, reasoning or None, calls, finish, chunks


@pytest.mark.parametrize("stream", [False, True])
def test_auto_parses_calls_and_sends_the_tools(double, stream):
    client, model = double
    model.reply = lambda prefix, thinking: "Drive.\n</think>\n\nGoing." + CALL_DRIVE
    content, reasoning, calls, finish, _ = create(client, stream, tools=TOOLS)
    assert calls == [("drive_distance", {"distance": 1.5})] and finish == "tool_calls"
    assert content.strip() == "Going." and reasoning.strip() == "Drive."
    assert [c["tools"] for c in model.calls] == [TOOLS] and model.calls[0]["prefix"] == ""


@pytest.mark.parametrize("stream", [False, True])
def test_tool_choice_none_leaves_the_tools_out_and_parses_no_call(double, stream):
    client, model = double
    model.reply = lambda prefix, thinking: "</think>\n\n" + CALL_DRIVE
    content, _, calls, finish, _ = create(client, stream, tools=TOOLS, tool_choice="none")
    assert model.calls[0]["tools"] is None
    assert calls == [] and finish == "stop" and "<function=drive_distance>" in content


@pytest.mark.parametrize("stream", [False, True])
def test_tool_choice_required_thinks_then_must_call(double, stream):
    client, model = double
    # thinking: the first pass ends at </think>; the answer is then prefilled with the start of a call
    model.reply = lambda prefix, thinking: ("I will drive.\n</think>\n\nNo need to call anything." if not prefix
                                            else "drive_distance>\n<parameter=distance>\n1.5\n</parameter>\n"
                                                 "</function>\n</tool_call>")
    content, reasoning, calls, finish, _ = create(client, stream, tools=TOOLS, tool_choice="required")
    assert calls == [("drive_distance", {"distance": 1.5})] and finish == "tool_calls"
    assert reasoning.strip() == "I will drive." and not (content or "").strip()
    first, second = model.calls
    assert "</think>" in first["stop"] and first["prefix"] == ""
    assert second["prefix"] == "I will drive.\n</think>\n\n<tool_call>\n<function="
    assert second["max_new_tokens"] < first["max_new_tokens"]      # one budget for the whole turn


@pytest.mark.parametrize("stream", [False, True])
def test_named_tool_choice_calls_that_function_once(double, stream):
    client, model = double
    model.reply = lambda prefix, thinking: ("<parameter=distance>\n2\n</parameter>\n</function>\n</tool_call>\n"
                                            + CALL_DRIVE.replace("drive_distance", "stop"))
    content, _, calls, finish, _ = create(
        client, stream, tools=TOOLS, tool_choice={"type": "function", "function": {"name": "drive_distance"}},
        extra_body={"chat_template_kwargs": {"enable_thinking": False}})
    assert calls == [("drive_distance", {"distance": 2})] and finish == "tool_calls"   # the second call cut off
    (only,) = model.calls
    assert only["prefix"] == "<tool_call>\n<function=drive_distance>\n" and "</tool_call>" in only["stop"]
    assert only["thinking"] is False and not (content or "").strip()


def test_parallel_tool_calls_false_ends_at_the_first_call(double):
    client, model = double
    model.reply = lambda prefix, thinking: "</think>\n\n" + CALL_DRIVE + "\n" + CALL_DRIVE.replace("1.5", "3")
    _, _, calls, _, _ = create(client, False, tools=TOOLS, parallel_tool_calls=False)
    assert calls == [("drive_distance", {"distance": 1.5})]
    _, _, calls, _, _ = create(client, False, tools=TOOLS)
    assert calls == [("drive_distance", {"distance": 1.5}), ("drive_distance", {"distance": 3})]


def test_required_without_a_valid_call_is_an_error_not_a_plain_answer(double):
    client, model = double
    model.reply = lambda prefix, thinking: "hmm</think>\n\n" if not prefix else "fly>\n</function>\n</tool_call>"
    with pytest.raises(openai.InternalServerError, match="no valid call"):
        create(client, False, tools=TOOLS, tool_choice="required")
    with pytest.raises(openai.APIError, match="no valid call"):
        create(client, True, tools=TOOLS, tool_choice="required")


@pytest.mark.parametrize("kw,param", [
    (dict(tool_choice="required"), "tool_choice"),                                     # no tools
    (dict(tools=TOOLS, tool_choice={"type": "function", "function": {"name": "fly"}}), "tool_choice"),
    (dict(tools=TOOLS, tool_choice="sometimes"), "tool_choice"),
    (dict(max_tokens=10 ** 9), "max_tokens"),
    (dict(max_tokens=0), "max_tokens"),
    (dict(n=2), "n"),
    (dict(temperature=-1), "temperature"),
    (dict(top_p=0), "top_p"),
    (dict(stop=["a", "b", "c", "d", "e"]), "stop"),
    (dict(logprobs=True), "logprobs"),
    (dict(presence_penalty=0.5), "presence_penalty"),
    (dict(response_format={"type": "json_object"}), "response_format"),
    (dict(extra_body={"best_of": 3}), "best_of"),
    (dict(extra_body={"chat_template_kwargs": {"enable_thinkin": False}}), "chat_template_kwargs"),
])
@pytest.mark.parametrize("stream", [False, True])
def test_requests_the_server_cannot_honour_are_refused(double, kw, param, stream):
    client, model = double
    with pytest.raises(openai.BadRequestError) as err:
        create(client, stream, **kw)
    assert err.value.status_code == 400 and err.value.body["param"] == param
    assert model.calls == []     # nothing was generated


@pytest.mark.parametrize("stream", [False, True])
def test_another_model_name_is_404_model_not_found(double, stream):
    client, model = double
    with pytest.raises(openai.NotFoundError) as err:
        create(client, stream, model="gpt-4o")
    assert err.value.code == "model_not_found" and "gpt-4o" in err.value.message
    assert model.calls == []
    assert client.models.list().data[0].id == "qwen3.5"


def test_sampling_fields_reach_the_engine(double):
    client, model = double
    model.reply = lambda prefix, thinking: "one two STOP three"
    content, _, _, finish, r = create(client, False, temperature=0.7, top_p=0.9, seed=5, stop="STOP",
                                      max_completion_tokens=50,
                                      extra_body={"top_k": 20, "chat_template_kwargs": {"enable_thinking": False}})
    assert content == "one two " and finish == "stop"
    call = model.calls[0]
    assert (call["temperature"], call["top_p"], call["top_k"], call["seed"]) == (0.7, 0.9, 20, 5)
    assert call["stop"] == ("STOP",) and call["max_new_tokens"] == 50
    assert r.usage.completion_tokens == 2


def test_stream_usage_only_when_asked(double):
    client, model = double
    *_, chunks = create(client, True)
    assert all(c.usage is None for c in chunks)
    *_, chunks = create(client, True, stream_options={"include_usage": True})
    assert chunks[-1].choices == [] and chunks[-1].usage.prompt_tokens == 10


@pytest.mark.parametrize("stream", [False, True])
def test_a_client_that_goes_away_cancels_its_generation(double, stream):
    client, model = double
    model.reply, model.delay_s = (lambda prefix, thinking: "x" * 4000), 0.05     # 1000 chunks: 50 s
    impatient = openai.OpenAI(base_url=str(client.base_url), api_key="unused", max_retries=0, timeout=3.0)
    if stream:
        s = impatient.chat.completions.create(model="qwen3.5", messages=USER, stream=True)
        next(iter(s))
        s.close()
    else:
        with pytest.raises(openai.APITimeoutError):
            create(impatient, False)
    assert model.cancelled.wait(20), "generation went on after the client disconnected"
    model.reply, model.delay_s = (lambda prefix, thinking: "next"), 0.0
    assert create(client, False)[1] == "next"     # thinking on: the whole reply is reasoning


# --- the real engine on a tiny random checkpoint --------------------------------------------------

@pytest.fixture(scope="module")
def small_context_checkpoint(tmp_path_factory):
    pytest.importorskip("transformers")
    from .tiny_model import make_tiny_checkpoint

    folder = make_tiny_checkpoint(tmp_path_factory.mktemp("tiny_qwen_serve"))
    cfg = json.loads((folder / "config.json").read_text())
    cfg["text_config"]["max_position_embeddings"] = 2048    # a context a test can overflow
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder


@pytest.fixture(scope="module")
def serve_url(small_context_checkpoint):
    with serving(small_context_checkpoint, "--max-tokens", "8") as url:
        yield url


@pytest.mark.slow
@pytest.mark.parametrize("stream", [False, True])
def test_real_engine_with_every_tool_choice(serve_url, stream):
    from qwen_stack.qwen_node.engine.tokenizer import QwenTokenizer

    client = openai.OpenAI(base_url=serve_url, api_key="unused", max_retries=0, timeout=120)
    off = {"chat_template_kwargs": {"enable_thinking": False}}
    usage = {}
    for choice in ("auto", "none", "required", {"type": "function", "function": {"name": "drive_distance"}}):
        kw = dict(model="qwen3.5", messages=USER, tools=TOOLS, tool_choice=choice, max_tokens=4, extra_body=off)
        if stream:
            chunks = list(client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **kw))
            u, finish = chunks[-1].usage, [c.choices[0].finish_reason for c in chunks if c.choices][-1]
        else:
            r = client.chat.completions.create(**kw)
            u, finish = r.usage, r.choices[0].finish_reason
        # four random tokens: the turn ends by length (a forced call cannot have closed)
        assert u.completion_tokens == 4 and finish == "length"
        usage[json.dumps(choice)] = u.prompt_tokens
    tok = QwenTokenizer()
    tools_section = len(tok.encode(
        json.dumps(TOOLS[0]))) + len(tok.encode(json.dumps(TOOLS[1])))
    assert usage['"none"'] < usage['"auto"'] - tools_section          # "none": no tools in the prompt
    assert usage['"required"'] == usage['"auto"'] + len(tok.encode("<tool_call>\n<function="))
    named = usage[json.dumps({"type": "function", "function": {"name": "drive_distance"}})]
    assert named == usage['"auto"'] + len(tok.encode("<tool_call>\n<function=drive_distance>\n"))


@pytest.mark.slow
def test_real_engine_refuses_a_turn_past_its_context(serve_url):
    client = openai.OpenAI(base_url=serve_url, api_key="unused", max_retries=0, timeout=120)
    with pytest.raises(openai.BadRequestError, match="max_tokens"):
        client.chat.completions.create(model="qwen3.5", messages=USER, max_tokens=10 ** 9)
    for stream in (False, True):     # fits alone, not with the prompt: the engine's check, still a 400
        with pytest.raises(openai.BadRequestError, match="context of 2048 tokens"):
            r = client.chat.completions.create(model="qwen3.5", messages=USER, max_tokens=2040, stream=stream)
            list(r) if stream else None
    r = httpx.post(f"{serve_url}/chat/completions", json={"model": "qwen3.5", "messages": USER, "max_tokens": 2},
                   timeout=120)
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 2


def _serve(args, timeout=600):
    return subprocess.run([sys.executable, "-m", "qwen_stack.qwen_node.engine.serve", *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.slow
def test_serve_refuses_a_default_max_tokens_past_the_context(small_context_checkpoint):
    r = _serve(["--model", str(small_context_checkpoint), "--device", "cpu", "--max-tokens", "4096"])
    assert r.returncode == 2 and "--max-tokens 4096 does not fit the model's context of 2048 tokens" in r.stderr


def test_serve_names_a_broken_checkpoint_in_one_line(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["Qwen3_5ForCausalLM"], "vocab_size": "many"}))
    r = _serve(["--model", str(tmp_path), "--device", "cpu"])
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"{tmp_path / 'config.json'}: missing field num_hidden_layers" in r.stderr


@pytest.mark.slow
def test_real_engine_shrinks_the_default_max_tokens_to_the_room_left(serve_url):
    """serve runs with --max-tokens 8; a prompt 3 tokens short of the 2048 context gets 3, not a 400."""
    from qwen_stack.qwen_node.engine.chat import render_chat
    from qwen_stack.qwen_node.engine.tokenizer import QwenTokenizer

    tok = QwenTokenizer()
    k = 2000
    while True:
        msgs = [{"role": "user", "content": "go " * k}]
        n = len(tok.encode(render_chat(msgs)[0]))
        if n >= 2045:
            break
        k += 1
    assert n == 2045
    r = httpx.post(f"{serve_url}/chat/completions", json={"model": "qwen3.5", "messages": msgs}, timeout=300)
    assert r.status_code == 200, r.text
    assert r.json()["usage"] == {"prompt_tokens": 2045, "completion_tokens": 3, "total_tokens": 2048}
    r = httpx.post(f"{serve_url}/chat/completions", json={"model": "qwen3.5", "messages": msgs, "max_tokens": 8},
                   timeout=300)
    assert r.status_code == 400 and "at most 3 new tokens fit" in r.json()["error"]["message"]
