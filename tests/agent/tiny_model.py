"""A tiny random Qwen3.5-MoE checkpoint with the real tokenizer's vocabulary (for plumbing tests).

Built with transformers (tests/engine/tiny_checkpoints.make_checkpoint: config from
Qwen3_5MoeConfig, every tensor randomised, save_pretrained). The vocabulary is the full
248,320 rows so that real tokenizer ids fit; everything else is tiny.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

from qwen_stack.paths import SOURCE_ROOT

VOCAB = 248_320


def make_tiny_checkpoint(out_dir: Path, seed: int = 0) -> Path:
    spec = importlib.util.spec_from_file_location("engine_tiny_checkpoints",
                                                  SOURCE_ROOT / "tests" / "engine" / "tiny_checkpoints.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.make_checkpoint(out_dir, arch="Qwen3_5MoeForConditionalGeneration", seed=seed, vocab=VOCAB)
    return out_dir
