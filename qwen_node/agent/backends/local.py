"""`local` backend: our Qwen3.5 engine (qwen_node/engine) in this process.

`LocalChatEngine` is the one place that turns chat messages into a prompt for the engine and
streams its output text; the agent backend and `qwen-stack serve` both use it. It renders the
conversation with the engine's Qwen3.5 chat format (engine/chat.py), so with thinking on the
prompt ends in "<think>\\n" and the output starts inside the thinking block.

Images go through the checkpoint's vision tower (the engine's preprocessing and multimodal
positions); in language-model-only mode (camera: none) or with a text-only checkpoint the prompt
is text only, and `last_prompt_images` counts the frames the conversation held.
"""
from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from qwen_stack.paths import project_path
from qwen_stack.qwen_node.agent.planner import CancelToken, ChatMessage

LOG = logging.getLogger(__name__)


@dataclass
class GenerationStats:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = ""
    stop_string: str = ""          # which stop string ended it (finish_reason "stop_string")
    first_token_s: float = 0.0     # prompt ready -> first text
    total_s: float = 0.0

    @property
    def decode_tok_s(self) -> float:
        """Tokens per second after the first (the prefill and the first token excluded); 0 if unknown."""
        span = self.total_s - self.first_token_s
        return (self.completion_tokens - 1) / span if self.completion_tokens > 1 and span > 0 else 0.0

    def log_line(self, turn: int) -> str:
        """One turn's figures as qwen_node logs them (parse_turn_stats reads them back)."""
        return (f"turn {turn}: prompt {self.prompt_tokens} tokens, {self.completion_tokens} tokens in "
                f"{self.total_s:.3f} s, first after {self.first_token_s:.3f} s, decode {self.decode_tok_s:.1f} tok/s")


_TURN_STATS = re.compile(r"turn (\d+): prompt (\d+) tokens, (\d+) tokens in ([\d.]+) s, first after ([\d.]+) s, "
                         r"decode ([\d.]+) tok/s")


def parse_turn_stats(log_text: str) -> list[dict]:
    """The per-turn figures of GenerationStats.log_line found in a log, in order."""
    return [{"turn": int(m[1]), "prompt_tokens": int(m[2]), "completion_tokens": int(m[3]), "total_s": float(m[4]),
             "first_token_s": float(m[5]), "decode_tok_s": float(m[6])} for m in _TURN_STATS.finditer(log_text)]


_KEEP_IN_ASSISTANT = ("<tool_call>", "</tool_call>", "<think>", "</think>")


def strip_special_tokens(text: str, keep: tuple[str, ...] = ()) -> str:
    """Remove Qwen control tokens from message text (a tool result or a garbled model turn must not
    inject them into the next prompt)."""
    from qwen_stack.qwen_node.engine.chat import SPECIAL_TOKENS

    for tok in SPECIAL_TOKENS:
        if tok not in keep and tok in text:
            text = text.replace(tok, "")
    return text


def chat_dicts(messages: Sequence[ChatMessage], vision: bool) -> tuple[list[dict], list[Any]]:
    """ChatMessages -> engine chat-format dicts, plus the images in placeholder order."""
    out: list[dict] = []
    images: list[Any] = []
    for m in messages:
        text = strip_special_tokens(m.content, _KEEP_IN_ASSISTANT if m.role == "assistant" else ())
        if m.role == "assistant" and "</think>" in text:
            # one reasoning block: the chat format takes reasoning before the first </think> and the answer
            # after the last, so stray tags are dropped
            reasoning, _, answer = text.rpartition("</think>")
            text = reasoning.replace("<think>", "").replace("</think>", "") + "</think>" + answer.replace("<think>", "")
        elif m.role == "assistant":
            text = text.replace("<think>", "")
        if m.images and vision and m.role == "user":
            parts: list[dict] = [{"type": "image"} for _ in m.images] + [{"type": "text", "text": text}]
            images.extend(m.images)
            out.append({"role": m.role, "content": parts})
        else:
            out.append({"role": m.role, "content": text})
    return out, images


class LocalChatEngine:
    """The engine's `Engine` (checkpoint + tokenizer + image preprocessing) behind the chat-streaming
    interface the agent backend and `qwen-stack serve` share; one generation at a time."""

    def __init__(self, model_dir: str, device: str = "auto", dtype: str = "auto", layer_backend: str = "pytorch",
                 trt_engine_dir: str = "", onnx_dir: str = "", trt_precision: str = "w4a16",
                 compile_decode: bool = False):
        import torch

        from qwen_stack.qwen_node.engine.engine import Engine
        from qwen_stack.trt_engines.runtime import BackendConfig, select_backend

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        torch_dtype = {"auto": torch.bfloat16 if device != "cpu" else torch.float32,
                       "bfloat16": torch.bfloat16, "float32": torch.float32}[dtype]
        self.device = device
        layers = BackendConfig(layer_backend, trt_engine_dir, onnx_dir, trt_precision)
        # select_backend logs (never silently) when TensorRT or a GPU is missing and PyTorch layers stay
        self.engine = Engine.from_pretrained(model_dir, dtype=torch_dtype, device=device, progress=False,
                                             layer_backend=lambda base: select_backend(layers, LOG, base=base))
        if compile_decode and layer_backend == "pytorch":
            from qwen_stack.qwen_node.engine import compiled_decode
            compiled_decode.enable_with_warm_up(self.engine.model, log=LOG.info)   # logs (never raises) on failure
        elif compile_decode:
            LOG.info("compile_decode applies to PyTorch layers; %s layers run their own kernels", layer_backend)
        self.tokenizer = self.engine.tokenizer
        self.model_dir = model_dir
        card = Path(model_dir) / "README.md"   # a model card says what the checkpoint is (e.g. the stand-in brain)
        if card.is_file():
            first = next((ln.strip() for ln in card.read_text().splitlines() if ln.strip()), "")
            LOG.warning("model %s: %s", model_dir, first[:300])
        self.context_length = self.engine.model.config.text.max_position_embeddings   # prompt + answer, tokens
        self.supports_images = self.engine.model.visual is not None

    def render(self, chat: list[dict], tools: list[dict] | None, enable_thinking: bool) -> tuple[str, int]:
        text, n_img, _ = self.engine.render(chat, tools or None, enable_thinking=enable_thinking)
        return text, n_img

    def stream(self, chat: list[dict], images: list[Any], tools: list[dict] | None, on_text: Callable[[str], None],
               cancel: Callable[[], bool], max_new_tokens: int, temperature: float, enable_thinking: bool,
               on_prompt_ready: Callable[[], None] | None = None, *, prefix: str = "",
               stop_strings: tuple[str, ...] = (), top_p: float = 1.0, top_k: int = 0,
               seed: int | None = None) -> tuple[str, GenerationStats]:
        """Generate one assistant turn; on_text gets each text delta. Returns (text, stats).
        prefix: the start of the answer the model continues (not repeated in text or on_text);
        stop_strings end the turn, the text cut before them.
        on_prompt_ready is not called here: the engine builds the prompt inside generate()."""
        if not self.supports_images:  # text-only checkpoint: leave image parts out of the prompt
            chat = [{**m, "content": "".join(p.get("text", "") for p in m["content"])}
                    if isinstance(m.get("content"), list) else m for m in chat]
            images = []
        t0 = time.perf_counter()
        stats = GenerationStats()

        def on_token(_tok, delta: str) -> None:
            if not stats.first_token_s:
                stats.first_token_s = time.perf_counter() - t0
            if delta:
                on_text(delta)

        res = self.engine.generate(chat, images=list(images), tools=tools or None, enable_thinking=enable_thinking,
                                   max_new_tokens=max_new_tokens, temperature=temperature, on_token=on_token,
                                   cancel=cancel, prefix=prefix, stop_strings=tuple(stop_strings), top_p=top_p,
                                   top_k=top_k, seed=seed)
        stats.prompt_tokens, stats.completion_tokens = res.prompt_tokens, len(res.token_ids)
        stats.finish_reason, stats.total_s = res.finish_reason, time.perf_counter() - t0
        stats.stop_string = res.stop_string
        return res.text, stats


class LocalEngineBackend:
    """planner.LanguageModel over LocalChatEngine."""
    is_model = True

    def __init__(self, engine: LocalChatEngine, max_new_tokens: int, temperature: float, enable_thinking: bool,
                 vision: bool):
        self.engine = engine
        self.max_new_tokens, self.temperature, self.enable_thinking = max_new_tokens, temperature, enable_thinking
        self.vision = vision and engine.supports_images
        self.sees_images = self.vision   # planner: no frame messages for a text-only checkpoint
        self.start_in_thinking = enable_thinking
        self.name = f"local:{engine.model_dir}"
        self.last_stats = GenerationStats()
        self.last_prompt_images = 0
        self.first_prompt_tokens = 0     # prompt tokens of the first turn of the last task
        self.on_prompt_ready: Callable[[], None] | None = None
        if vision and not engine.supports_images:
            LOG.warning("local backend: the checkpoint has no vision tower; frames are left out of prompts")

    @classmethod
    def from_settings(cls, s) -> "LocalEngineBackend":
        # a relative model_dir not found from here is the project's (the default: models/brain-nvfp4)
        return cls(LocalChatEngine(str(project_path(s.model_dir)), s.device, layer_backend=s.layer_backend,
                                   trt_engine_dir=s.trt_engine_dir, onnx_dir=s.onnx_dir,
                                   trt_precision=s.trt_precision, compile_decode=s.compile_decode),
                   s.max_new_tokens, s.temperature, s.enable_thinking,
                   vision=s.camera != "none")

    def generate(self, messages: Sequence[ChatMessage], tools: list[dict], on_text: Callable[[str], None],
                 cancel: CancelToken) -> str:
        chat, images = chat_dicts(messages, self.vision)
        self.last_prompt_images = sum(len(m.images) for m in messages)
        text, self.last_stats = self.engine.stream(
            chat, images, tools, on_text, lambda: cancel.cancelled, self.max_new_tokens, self.temperature,
            self.enable_thinking, on_prompt_ready=self.on_prompt_ready)
        if len(messages) <= 2:
            self.first_prompt_tokens = self.last_stats.prompt_tokens
        return text
