"""Generation: prefill then decode over the preallocated caches, sampling, stops, streaming, cancellation."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from .model import Qwen35ForGeneration


@dataclass
class SamplingParams:
    max_new_tokens: int = 256       # hard cap on generated tokens
    temperature: float = 0.0        # 0 = greedy (argmax); > 0 samples from softmax(logits / temperature)
    top_p: float = 1.0              # nucleus: keep the smallest set of tokens whose probability reaches top_p
    top_k: int = 0                  # keep only the k most likely tokens (0 = no limit)
    seed: int | None = None         # seeds the sampler; same seed + inputs -> same tokens
    stop_token_ids: tuple[int, ...] = ()   # generation ends after emitting one of these (e.g. <|im_end|>)
    stop_strings: tuple[str, ...] = ()     # generation ends when the text contains one; the text is cut before it
    vocab_limit: int | None = None  # ids >= this are never sampled (rows the tokenizer cannot decode); None = all

    def __post_init__(self):
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        if any(not s for s in self.stop_strings):
            raise ValueError("stop_strings must not contain an empty string")
        if self.vocab_limit is not None and self.vocab_limit < 1:
            raise ValueError(f"vocab_limit must be >= 1, got {self.vocab_limit}")


class ContextLengthError(ValueError):
    """The prompt plus the tokens asked for do not fit the model's context (max_position_embeddings)."""

    def __init__(self, message: str, prompt_tokens: int, context: int):
        super().__init__(message)
        self.prompt_tokens, self.context = prompt_tokens, context     # room left: context - prompt_tokens


@dataclass
class GenerationResult:
    token_ids: list[int]            # generated tokens (a final stop token included)
    text: str                       # decoded text, cut before a stop string ("" without a detokenizer)
    finish_reason: str              # "stop_token", "stop_string", "length" or "cancelled"
    prompt_tokens: int
    prefill_seconds: float
    decode_seconds: float           # time of the decode steps (tokens after the first)
    timings: dict = field(default_factory=dict)
    stop_string: str = ""           # the stop string that ended generation (finish_reason "stop_string")

    @property
    def prefill_tokens_per_s(self) -> float:
        return self.prompt_tokens / self.prefill_seconds if self.prefill_seconds > 0 else float("inf")

    @property
    def decode_tokens_per_s(self) -> float:
        n = max(len(self.token_ids) - 1, 0)
        return n / self.decode_seconds if self.decode_seconds > 0 else float("inf")


def sample_next(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None) -> int:
    """logits: [V] -> one token id (greedy, or temperature / top-k / top-p sampling)."""
    if params.vocab_limit is not None and params.vocab_limit < logits.shape[-1]:
        logits = logits[:params.vocab_limit]               # padded rows no tokenizer id stands for
    if params.temperature == 0:
        return int(logits.argmax())
    scores = logits.float() / params.temperature
    if params.top_k > 0:
        kth = scores.topk(min(params.top_k, scores.numel())).values[-1]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if params.top_p < 1.0:
        sorted_scores, order = scores.sort(descending=True)
        probs = sorted_scores.softmax(-1)
        before = probs.cumsum(-1) - probs                  # mass of strictly more likely tokens
        drop = before >= params.top_p                      # the top token always survives
        scores = scores.scatter(0, order, sorted_scores.masked_fill(drop, float("-inf")))
    probs = scores.softmax(-1)
    return int(torch.multinomial(probs, 1, generator=generator))


def _is_cancelled(cancel) -> bool:
    if cancel is None:
        return False
    if isinstance(cancel, threading.Event):
        return cancel.is_set()
    return bool(cancel())


class _TextStream:
    """Incremental detokenization with stop strings: holds back text that may still become a stop string
    or an incomplete UTF-8 character, emits the rest."""

    def __init__(self, detokenize, stop_strings):
        self.detokenize, self.stops = detokenize, stop_strings
        self.tokens: list[int] = []
        self.emitted = 0
        self.text = ""
        self.stopped = False
        self.stopped_by = ""

    def push(self, token: int) -> str:
        if self.detokenize is None:
            self.tokens.append(token)
            return ""
        self.tokens.append(token)
        text = self.detokenize(self.tokens)
        for s in self.stops:
            at = text.find(s)
            if at >= 0:
                text, self.stopped, self.stopped_by = text[:at], True, s
        self.text = text
        safe = len(text)
        if not self.stopped:
            if text.endswith("\ufffd"):
                safe = len(text.rstrip("\ufffd"))
            for s in self.stops:                           # longest tail that is a prefix of a stop string
                for n in range(min(len(s) - 1, len(text)), 0, -1):
                    if text.endswith(s[:n]):
                        safe = min(safe, len(text) - n)
                        break
        delta = text[self.emitted:safe]
        self.emitted = max(self.emitted, safe)
        return delta

    def flush(self) -> str:
        delta = self.text[self.emitted:]
        self.emitted = len(self.text)
        return delta


@torch.inference_mode()
def generate(model: Qwen35ForGeneration, prompt_ids: list[int] | torch.Tensor, params: SamplingParams,
             inputs_embeds: torch.Tensor | None = None, position_ids: torch.Tensor | None = None,
             next_position: int | None = None, detokenize: Callable[[list[int]], str] | None = None,
             on_token: Callable[[int | None, str], None] | None = None, cancel=None) -> GenerationResult:
    """Batch-1 generation. prompt_ids: [T]; inputs_embeds: [1, T, D] (when images/video were spliced in);
    position_ids: [3, T] multimodal positions and next_position the first position after the prompt
    (both default to plain 0..T-1). on_token(token_id, text_delta) is called per generated token, and once
    more with token_id None if text held back (a possible stop-string prefix) is released at the end;
    cancel is a threading.Event or a callable returning True to stop."""
    ids = torch.as_tensor(prompt_ids, dtype=torch.long).view(1, -1)
    T = ids.shape[1]
    if T == 0:
        raise ValueError("prompt is empty")
    context = model.config.text.max_position_embeddings
    if T + params.max_new_tokens > context:
        if T > context:
            raise ContextLengthError(f"the prompt has {T} tokens, more than the model's context of {context} "
                                     f"tokens (max_position_embeddings in config.json)", T, context)
        raise ContextLengthError(f"the prompt ({T} tokens) plus max_new_tokens ({params.max_new_tokens}) exceed the "
                                 f"model's context of {context} tokens (max_position_embeddings in config.json); "
                                 f"at most {context - T} new tokens fit", T, context)
    device = model.lm_head.weight.device
    ids = ids.to(device)
    if position_ids is None:
        position_ids, next_position = torch.arange(T).expand(3, T), T
    position_ids = position_ids.to(device).view(3, 1, T)
    model.setup_caches(1, max(model.cache.max_len, T + params.max_new_tokens))
    generator = None
    if params.seed is not None:
        generator = torch.Generator(device=device).manual_seed(params.seed)
    stream = _TextStream(detokenize, params.stop_strings)
    out: list[int] = []
    reason = "length"

    t0 = time.perf_counter()
    logits = model(ids, position_ids=position_ids, start=0, inputs_embeds=inputs_embeds, last_only=True)
    token = sample_next(logits[0, -1], params, generator)
    t1 = time.perf_counter()
    pos = T
    while True:
        out.append(token)
        delta = stream.push(token)
        if on_token is not None:
            on_token(token, delta)
        if token in params.stop_token_ids:
            reason = "stop_token"
            break
        if stream.stopped:
            reason = "stop_string"
            break
        if len(out) >= params.max_new_tokens:
            break
        if _is_cancelled(cancel):
            reason = "cancelled"
            break
        step_pos = torch.full((3, 1, 1), next_position + (pos - T), device=device)
        logits = model(torch.tensor([[token]], device=device), position_ids=step_pos, start=pos, last_only=True)
        pos += 1
        token = sample_next(logits[0, -1], params, generator)
    t2 = time.perf_counter()
    tail = stream.flush()
    if tail and on_token is not None:
        on_token(None, tail)                                # held-back text at the end (no new token)
    return GenerationResult(token_ids=out, text=stream.text, finish_reason=reason, prompt_tokens=T,
                            prefill_seconds=t1 - t0, decode_seconds=t2 - t1, stop_string=stream.stopped_by)
