"""Agent loop latency, p50/p99 per stage, each beside a baseline measured in the same run.

Stages (what qwen_node adds on the way from camera to robot and back):
  A  camera frame -> prompt ready: raw Image bytes -> RGB -> rolling window -> clip/pixel budget ->
     chat messages -> Qwen3.5 chat format + image preprocessing (patches) -> token ids
                                                              baseline: the bytes -> RGB decode alone
  B  prompt -> first token, tiny random checkpoint (CPU): LocalChatEngine.stream (render, tokenize,
     prefill, first decoded text).                            baseline: engine generate() on the same ids
  C  parsed tool call -> service request received by the server, over ROS (planner executor,
     RosToolTransport, rclpy client, DDS).                    baseline: bare rclpy call_async -> server
  D  service response -> next prompt ready (response transport, tool-response JSON, context folding,
     chat format, token ids).                                  baseline: bare rclpy server return -> client future

The service is a DescribeState server in this process (a test double of the skills node; C and D
measure the agent side and the ROS transport, not a skill). Run:
    .venv/bin/python -m qwen_stack.rosenv .venv/bin/python bench/agent_latency.py [--steps 200] [--frames 200]
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))]


def row(name: str, ours: list[float], base: list[float]) -> str:
    f = lambda xs: f"{1e3 * pct(xs, 50):9.3f} {1e3 * pct(xs, 99):9.3f}"
    return f"{name:<44} {f(ours)}   {f(base)}   {len(ours):5d}"


def stage_a(n: int, width: int, height: int, engine) -> tuple[list[float], list[float]]:
    from qwen_stack.qwen_node.agent.backends.local import chat_dicts
    from qwen_stack.qwen_node.agent.planner import ChatMessage
    from qwen_stack.images import decode_raw
    from qwen_stack.qwen_node.agent.frame_window import FrameWindow

    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (height, width, 3), dtype=np.uint8).tobytes() for _ in range(8)]
    window = FrameWindow(5.0)
    tools = [{"type": "function", "function": {"name": "describe_state", "description": "state",
                                               "parameters": {"type": "object", "properties": {}}}}]
    ours, base = [], []
    for i in range(n):
        data = frames[i % len(frames)]
        t0 = time.perf_counter()
        rgb = decode_raw(width, height, "rgb8", width * 3, data)
        base.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        rgb = decode_raw(width, height, "rgb8", width * 3, data)
        window.add(time.monotonic(), rgb)
        clip = window.clip(1, 2.0, 640 * 480)
        chat, images = chat_dicts([ChatMessage("system", "You are a robot."),
                                   ChatMessage("user", "find the red cube", images=clip)], vision=True)
        prompt = engine.build_prompt(chat, images, tools=tools)   # chat format, image patches, token ids
        ours.append(time.perf_counter() - t0)
        assert prompt.token_ids and prompt.images
    return ours, base


def stage_b(n: int, model_dir: Path) -> tuple[list[float], list[float]]:
    from qwen_stack.qwen_node.agent.backends.local import LocalChatEngine
    from qwen_stack.qwen_node.engine.generate import SamplingParams, generate

    engine = LocalChatEngine(str(model_dir), "cpu")
    chat = [{"role": "system", "content": "You are a robot."}, {"role": "user", "content": "find the red cube"}]
    ids = engine.tokenizer.encode(engine.render(chat, None, True)[0])
    ours, base = [], []
    for i in range(n + 3):   # the first 3 are warm-up, not counted
        marks = {}

        def first(_text):
            marks.setdefault("first", time.perf_counter())

        t0 = time.perf_counter()
        engine.stream(chat, [], None, first, lambda: "first" in marks, 2, 0.0, True)
        t1 = marks["first"] - t0
        t0 = time.perf_counter()
        got = {}
        generate(engine.engine.model, ids, SamplingParams(max_new_tokens=2),
                 on_token=lambda tok, d: got.setdefault("t", time.perf_counter()), cancel=lambda: "t" in got)
        if i >= 3:
            ours.append(t1)
            base.append(got["t"] - t0)
    return ours, base


def stages_c_d(steps: int, tokenizer):
    import rclpy
    from rclpy.callback_groups import ReentrantCallbackGroup
    from rclpy.executors import MultiThreadedExecutor

    from qwen_stack import topics
    from qwen_stack.qwen_node.agent.backends.local import chat_dicts
    from qwen_stack.qwen_node.agent.planner import CancelToken, Planner, PlannerConfig, ToolExecutor
    from qwen_stack.qwen_node.agent.tool_registry import ToolRegistry
    from qwen_stack.qwen_node.agent.config import config_path
    from qwen_stack.qwen_node.engine.chat import render_chat
    from qwen_stack.qwen_node.ros_transport import RosToolTransport
    from qwen_stack_interfaces.srv import DescribeState

    rclpy.init()
    server_node, client_node = rclpy.create_node("bench_skills_double"), rclpy.create_node("bench_agent")
    marks: dict[str, list[float]] = {"recv": [], "sent": [], "parsed": [], "prompt": []}

    def describe(req, resp):
        marks["recv"].append(time.perf_counter())
        resp.success, resp.state_json = True, json.dumps({"pose": {"x": 1.0, "y": 2.0, "theta": 0.5}})
        marks["sent"].append(time.perf_counter())
        return resp

    server_node.create_service(DescribeState, topics.SKILL_DESCRIBE_STATE, describe)
    ex = MultiThreadedExecutor(num_threads=4)
    ex.add_node(server_node)
    ex.add_node(client_node)
    threading.Thread(target=ex.spin, daemon=True).start()

    registry = ToolRegistry.load(config_path("tools.yaml"), safety_policy_path=config_path("safety_policy.yaml"))
    transport = RosToolTransport(client_node, registry.supervisor_proxy, ReentrantCallbackGroup())
    call = "<tool_call>\n<function=describe_state>\n</function>\n</tool_call>"

    class ModelDouble:
        """Renders and tokenizes the conversation like the local backend, then 'answers' instantly."""
        is_model, start_in_thinking, name = True, False, "bench-model-double"

        def __init__(self):
            self.turns = 0

        def generate(self, messages, tools, on_text, cancel):
            chat, _ = chat_dicts(messages, vision=False)
            tokenizer.encode(render_chat(chat, tools)[0])
            marks["prompt"].append(time.perf_counter())
            self.turns += 1
            text = call if self.turns <= steps else "done"
            on_text(text)
            return text

    planner = Planner(ModelDouble(), registry, ToolExecutor(registry, transport, None, 0.3, 0.22), "sys",
                      PlannerConfig(max_steps=steps + 1, max_turns=steps + 2),
                      on_timing=lambda n: marks["parsed"].append(time.perf_counter()) if n == "call_parsed" else None)
    res = planner.run("bench", CancelToken())
    assert res.success, res.message
    c = [r - p for r, p in zip(marks["recv"], marks["parsed"])][5:]
    d = [p - s for s, p in zip(marks["sent"], marks["prompt"][1:])][5:]

    # baselines: bare rclpy client against the same server
    client = client_node.create_client(DescribeState, topics.SKILL_DESCRIBE_STATE)
    client.wait_for_service(timeout_sec=5)
    bc, bd = [], []
    for _ in range(steps):
        n0 = len(marks["recv"])
        t0 = time.perf_counter()
        fut = client.call_async(DescribeState.Request())
        ev = threading.Event()
        fut.add_done_callback(lambda f: (marks.setdefault("done", []).append(time.perf_counter()), ev.set()))
        ev.wait(5)
        bc.append(marks["recv"][n0] - t0)
        bd.append(marks["done"][-1] - marks["sent"][n0])
    ex.shutdown()
    rclpy.shutdown()
    return c, bc[5:], d, bd[5:]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--first-token-runs", type=int, default=30)
    ap.add_argument("--steps", type=int, default=200)
    args = ap.parse_args(argv)

    from qwen_stack.qwen_node.engine.tokenizer import QwenTokenizer

    tok = QwenTokenizer()
    spec = importlib.util.spec_from_file_location("agent_tiny_model", ROOT / "tests" / "agent" / "tiny_model.py")
    tiny = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tiny)

    print("agent loop latency (ms)", file=sys.stderr)
    lines = [f"{'stage':<44} {'p50':>9} {'p99':>9}   {'base p50':>9} {'base p99':>9}   {'n':>5}"]
    with tempfile.TemporaryDirectory() as d:
        print("building a tiny random checkpoint ...", file=sys.stderr, flush=True)
        model_dir = tiny.make_tiny_checkpoint(Path(d) / "tiny")
        from qwen_stack.qwen_node.engine.engine import Engine
        import torch

        engine = Engine.from_pretrained(model_dir, dtype=torch.float32, progress=False)
        for w, h in ((320, 240), (640, 480)):
            a, ab = stage_a(args.frames, w, h, engine)
            lines.append(row(f"A frame {w}x{h} -> prompt ids ready", a, ab))
        b, bb = stage_b(args.first_token_runs, model_dir)
        lines.append(row("B prompt -> first token (tiny, CPU)", b, bb))
    c, bc, dd, bd = stages_c_d(args.steps, tok)
    lines.append(row("C parsed call -> service request received", c, bc))
    lines.append(row("D service response -> next prompt ready", dd, bd))
    print("\n".join(lines))
    print("\nbaselines: A decode only; B engine generate() on ready ids; C/D bare rclpy client on the same server")
    return 0


if __name__ == "__main__":
    sys.exit(main())
