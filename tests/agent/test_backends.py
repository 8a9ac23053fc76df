"""Backends: the OpenAI-compatible API and client against a scripted engine double (exact round trip),
then `qwen-stack serve` and the local backend on a tiny random checkpoint (plumbing and timing)."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest

from qwen_stack.qwen_node.agent.backends.openai_chat import OpenAIChatBackend, QwenTextFromDeltas, to_openai_messages
from qwen_stack.qwen_node.agent.output_parser import parse_output
from qwen_stack.qwen_node.agent.planner import CancelToken, ChatMessage, Planner, PlannerConfig, ToolExecutor
from qwen_stack.qwen_node.engine.openai_api import create_app

from .doubles import TransportDouble
from .serve_process import app_in_thread, serving

TOOLS = [
    {"type": "function", "function": {"name": "drive_distance", "description": "drive", "parameters": {
        "type": "object", "properties": {"distance": {"type": "number", "minimum": -3, "maximum": 3},
                                         "speed": {"type": "number", "minimum": 0.05, "maximum": 0.5}},
        "required": ["distance", "speed"]}}},
    {"type": "function", "function": {"name": "plan", "description": "nested", "parameters": {
        "type": "object", "properties": {"route": {"type": "array"}}, "required": ["route"]}}},
]
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
SCRIPTED = ("I need to move.\n</think>\n\nDriving now.\n<tool_call>\n<function=drive_distance>\n<parameter=distance>\n"
            "1.25\n</parameter>\n<parameter=speed>\n0.2\n</parameter>\n</function>\n</tool_call>\n<tool_call>\n"
            "<function=plan>\n<parameter=route>\n[{\"x\": 1, \"y\": [2, 3]}]\n</parameter>\n</function>\n</tool_call>")


class ScriptedChatEngineDouble:
    """Stands in for LocalChatEngine: streams SCRIPTED (thinking on: starts inside <think>)."""
    model_dir = "scripted-double"
    context_length = 4096

    def __init__(self):
        self.requests = []

    def stream(self, chat, images, tools, on_text, cancel, max_new_tokens, temperature, enable_thinking,
               on_prompt_ready=None, **options):
        from qwen_stack.qwen_node.agent.backends.local import GenerationStats

        self.requests.append((chat, len(images), tools))
        for i in range(0, len(SCRIPTED), 7):
            if cancel():
                break
            on_text(SCRIPTED[i:i + 7])
        return SCRIPTED, GenerationStats(10, 20, "stop_token")


@pytest.fixture(scope="module")
def scripted_server():
    engine = ScriptedChatEngineDouble()
    with app_in_thread(create_app(engine, "qwen3.5", api_key="k-test")) as url:
        yield url, engine


def _backend(url, native, key="k-test"):
    return OpenAIChatBackend(url, "qwen3.5", key, native, 64, 0.0, True, 30.0)


@pytest.mark.parametrize("native", [True, False])
def test_openai_backend_round_trips_tool_calls_through_the_api(scripted_server, native):
    url, engine = scripted_server
    chunks = []
    frame = np.full((8, 8, 3), 200, np.uint8)
    text = _backend(url, native).generate([ChatMessage("system", "sys"), ChatMessage("user", "go", images=[frame])],
                                          TOOLS, chunks.append, CancelToken())
    assert "".join(chunks) == text and len(chunks) > 2   # streamed
    turn = parse_output(text, SCHEMAS)
    assert turn.errors == []
    assert [(c.name, c.arguments) for c in turn.calls] == [
        ("drive_distance", {"distance": 1.25, "speed": 0.2}), ("plan", {"route": [{"x": 1, "y": [2, 3]}]})]
    assert turn.thinking.strip() == "I need to move." and turn.text.strip() == "Driving now."
    chat, n_images, tools = engine.requests[-1]
    assert n_images == 1 and chat[1]["content"][0] == {"type": "image"}
    assert (tools is not None) == native
    if not native:
        assert "<tools>" in chat[0]["content"] and "drive_distance" in chat[0]["content"]


def test_api_non_streaming_response_and_errors(scripted_server):
    url, _ = scripted_server
    h = {"Authorization": "Bearer k-test"}
    r = httpx.post(f"{url}/chat/completions", headers=h, json={"messages": [{"role": "user", "content": "go"}],
                                                                "tools": TOOLS}, timeout=30)
    assert r.status_code == 200
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    calls = choice["message"]["tool_calls"]
    assert [c["function"]["name"] for c in calls] == ["drive_distance", "plan"]
    assert json.loads(calls[0]["function"]["arguments"]) == {"distance": 1.25, "speed": 0.2}
    assert choice["message"]["reasoning_content"].strip() == "I need to move."
    assert httpx.post(f"{url}/chat/completions", json={"messages": []}, timeout=10).status_code == 401
    bad = httpx.post(f"{url}/chat/completions", headers=h, json={"messages": [{"role": "robot", "content": "x"}]},
                     timeout=10)
    assert bad.status_code == 400 and "role" in bad.json()["error"]["message"]
    bad = httpx.post(f"{url}/chat/completions", headers=h, timeout=10, json={"messages": [
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x/y.jpg"}}]}]})
    assert bad.status_code == 400 and "data:image" in bad.json()["error"]["message"]
    assert httpx.get(f"{url}/models", headers=h, timeout=10).json()["data"][0]["id"] == "qwen3.5"


def test_wrong_key_is_refused_by_the_backend(scripted_server):
    url, _ = scripted_server
    with pytest.raises(RuntimeError, match="401"):
        _backend(url, True, key="wrong").generate([ChatMessage("user", "go")], TOOLS, lambda t: None, CancelToken())


def test_history_conversion_native_ids_and_error_turns():
    msgs = [ChatMessage("system", "s"), ChatMessage("user", "go"),
            ChatMessage("assistant", "<think>x</think>ok" + "<tool_call>\n{\"name\": \"plan\", \"arguments\": "
                        "{\"route\": []}}\n</tool_call>"),
            ChatMessage("tool", '{"status": "succeeded"}'),
            ChatMessage("assistant", "<tool_call>\n<function=fly>\n</function>\n</tool_call>"),
            ChatMessage("tool", '{"error": "bad"}')]
    out = to_openai_messages(msgs, TOOLS, native=True)
    assert out[2]["tool_calls"][0]["id"] == "call_2_0" and out[2]["content"] == "ok"
    assert out[3] == {"role": "tool", "tool_call_id": "call_2_0", "content": '{"status": "succeeded"}'}
    assert "<function=fly>" in out[4]["content"] and "tool_calls" not in out[4]
    assert out[5]["role"] == "user" and "no valid call" in out[5]["content"] and "<tool_response>" not in out[5]["content"]
    prompt_mode = to_openai_messages(msgs, TOOLS, native=False)
    assert prompt_mode[3] == {"role": "tool", "content": '{"status": "succeeded"}'}
    assert "<tools>" in prompt_mode[0]["content"]


def test_deltas_with_broken_arguments_become_a_parse_error():
    got = []
    q = QwenTextFromDeltas(got.append)
    q.delta({"tool_calls": [{"index": 0, "function": {"name": "drive_distance", "arguments": '{"distance": 1'}}]})
    q.finish()
    turn = parse_output(q.text, SCHEMAS)
    assert turn.actions == [] and turn.errors


# --- real engine on a tiny random checkpoint ---------------------------------------------------

@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    pytest.importorskip("transformers")
    from .tiny_model import make_tiny_checkpoint

    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny_qwen"))


@pytest.mark.slow
def test_openai_backend_against_qwen_stack_serve(tiny_checkpoint, ros_env):
    with serving(tiny_checkpoint, "--max-tokens", "24") as url:
        chunks = []
        backend = OpenAIChatBackend(url, "qwen3.5", None, True, 24, 0.0, True, 120.0)
        text = backend.generate([ChatMessage("system", "s"), ChatMessage("user", "drive 1 m")], TOOLS,
                                chunks.append, CancelToken())
        assert text and "".join(chunks) == text
        assert backend.last_usage["completion_tokens"] == 24 and backend.last_usage["prompt_tokens"] > 50
        parse_output(text, SCHEMAS)   # random text parses without raising


def test_serve_refuses_a_public_bind_without_a_key(tmp_path):
    r = subprocess.run([sys.executable, "-m", "qwen_stack.qwen_node.engine.serve", "--model", str(tmp_path),
                        "--host", "0.0.0.0"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--api-key-env" in r.stderr


@pytest.mark.slow
def test_local_backend_loop_from_camera_frame_to_parsed_output(tiny_checkpoint):
    import yaml

    from qwen_stack.paths import config_file
    from qwen_stack.qwen_node.agent.backends.local import LocalChatEngine, LocalEngineBackend
    from qwen_stack.qwen_node.agent.tool_registry import ToolRegistry
    from qwen_stack.qwen_node.agent.frame_window import FrameWindow

    from .srv_files import srv_file_request_fields

    reg = ToolRegistry.from_dict(yaml.safe_load(config_file("tools.yaml").read_text()), srv_file_request_fields)
    window = FrameWindow(5.0)
    window.add(time.monotonic(), np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8))
    backend = LocalEngineBackend(LocalChatEngine(str(tiny_checkpoint), "cpu"), 16, 0.0, True, vision=True)
    marks, events = [], []
    transport = TransportDouble()
    planner = Planner(backend, reg, ToolExecutor(reg, transport, None, 0.3, 0.22), "sys",
                      PlannerConfig(max_turns=2, max_parse_retries=1),
                      frame_source=lambda: window.clip(1, 2.0, 4096), on_event=events.append,
                      on_timing=lambda n: marks.append(n))
    res = planner.run("find the red cube", CancelToken())
    assert backend.vision and backend.last_prompt_images >= 1   # the camera frame was in the conversation
    # ... and reached the model as image tokens: more prompt tokens than the text alone
    from qwen_stack.qwen_node.agent.backends.local import chat_dicts
    from qwen_stack.qwen_node.agent.planner import ChatMessage as CM
    text_only, _ = chat_dicts([CM("system", "sys"), CM("user", "find the red cube")], vision=False)
    n_text = len(backend.engine.tokenizer.encode(backend.engine.render(text_only, reg.function_specs(), True)[0]))
    assert backend.first_prompt_tokens > n_text
    assert backend.last_stats.completion_tokens > 0
    assert marks[:2] == ["prompt_ready", "first_token"]
    assert any(e.kind in ("thinking", "text") for e in events)   # output went through the parser
    assert res.message  # finished one way or another, with a reason (a random model: usually malformed)
    for route, service, req in transport.log:   # whatever a random model did, only valid calls were sent
        assert service.startswith("skills/")
