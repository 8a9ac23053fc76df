"""`replay` backend: plays back recorded or hand-written model output. It is NOT a model.

A replay script is a JSONL file, one model turn per line: {"output": "<raw Qwen3.5 output>"}
(an optional "comment" key is ignored). Each turn is streamed in small chunks, exactly as a
model's output would arrive, so the parser, planner and node run the same code path as with a
real model. The script does not look at tool responses: a turn that needs to know the world
must call a tool that discovers it (describe_state, go_to_object, ...).
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Callable, Sequence

from qwen_stack.qwen_node.agent.planner import CancelToken, ChatMessage

LOG = logging.getLogger(__name__)
NOT_A_MODEL = "REPLAY BACKEND: this is NOT a language model; it plays back a fixed script"


class ReplayExhausted(RuntimeError):
    pass


def load_replay_script(path: str | Path) -> list[str]:
    turns: list[str] = []
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{n}: not JSON ({exc})") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("output"), str):
            raise ValueError(f'{path}:{n}: each line must be an object with a string "output"')
        turns.append(obj["output"])
    if not turns:
        raise ValueError(f"{path}: no turns")
    return turns


class ReplayBackend:
    is_model = False
    start_in_thinking = False

    def __init__(self, turns: Sequence[str], chunk_chars: int = 8, chunk_delay_s: float = 0.0, name: str = "replay"):
        if chunk_chars <= 0:
            raise ValueError("replay chunk_chars must be > 0")
        self.turns = list(turns)
        self.chunk_chars, self.chunk_delay_s = chunk_chars, chunk_delay_s
        self.name = name
        self._next = 0
        LOG.warning(NOT_A_MODEL)

    def reset(self) -> None:
        """Start the script again (each task plays it from the top)."""
        self._next = 0

    def generate(self, messages: Sequence[ChatMessage], tools: list[dict], on_text: Callable[[str], None],
                 cancel: CancelToken) -> str:
        if self._next >= len(self.turns):
            raise ReplayExhausted(f"replay script has only {len(self.turns)} turns")
        text = self.turns[self._next]
        self._next += 1
        sent = 0
        while sent < len(text) and not cancel.cancelled:
            chunk = text[sent:sent + self.chunk_chars]
            on_text(chunk)
            sent += len(chunk)
            if self.chunk_delay_s:
                time.sleep(self.chunk_delay_s)
        return text[:sent]
