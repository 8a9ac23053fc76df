"""Limits the engine enforces: ids the tokenizer cannot decode are never sampled (the embedding is padded
past the tokenizer's table), and a prompt (plus the tokens asked for) past max_position_embeddings is
refused with a clear error instead of generating beyond the trained context."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from qwen_stack.qwen_node.engine.cli import generate_main
from qwen_stack.qwen_node.engine.engine import Engine
from qwen_stack.qwen_node.engine.generate import ContextLengthError, SamplingParams, sample_next

from tiny_checkpoints import make_checkpoint

PADDED_ROWS = (248_100, 248_319)    # embedding rows past the tokenizer's 248,077 ids


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("limits") / "ckpt"
    make_checkpoint(out, "Qwen3_5ForCausalLM", seed=11, vocab=248_320, hidden=32,
                    layer_types=("linear_attention", "full_attention"))
    return out


@pytest.fixture(scope="module")
def engine(folder):
    return Engine.from_pretrained(folder, dtype=torch.float32, progress=False)


@pytest.fixture
def padded_rows_win(engine):
    """The model's top logits are padded rows (as an undertrained padded row of a real checkpoint can be)."""
    def boost(_module, _inputs, logits):
        logits = logits.clone()
        logits[..., list(PADDED_ROWS)] += 1e4
        return logits

    handle = engine.model.lm_head.register_forward_hook(boost)
    yield
    handle.remove()


def test_sample_next_never_returns_an_id_at_or_past_the_limit():
    logits = torch.zeros(10)
    logits[8] = 50.0
    assert sample_next(logits, SamplingParams(vocab_limit=8), None) != 8
    gen = torch.Generator().manual_seed(0)
    picks = {sample_next(logits, SamplingParams(temperature=5.0, vocab_limit=8), gen) for _ in range(200)}
    assert picks and max(picks) < 8
    assert sample_next(logits, SamplingParams(), None) == 8       # without a limit the row wins
    with pytest.raises(ValueError, match="vocab_limit"):
        SamplingParams(vocab_limit=0)


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_ids_past_the_tokenizer_are_never_sampled(engine, padded_rows_win, temperature):
    assert engine.model.config.text.vocab_size > engine.tokenizer.vocab_size
    res = engine.generate([{"role": "user", "content": "Hi"}], max_new_tokens=6, temperature=temperature, seed=1)
    assert len(res.token_ids) >= 1 and all(t < engine.tokenizer.vocab_size for t in res.token_ids)
    assert isinstance(res.text, str)


def test_a_prompt_past_the_context_is_refused(engine):
    cfg = engine.model.config.text
    saved = cfg.max_position_embeddings
    msgs = [{"role": "user", "content": "one two three four five six seven eight nine ten"}]
    n = len(engine.build_prompt(msgs).token_ids)
    try:
        cfg.max_position_embeddings = n - 1
        with pytest.raises(ContextLengthError, match=rf"prompt has {n} tokens, more than the model's context of "
                                                     rf"{n - 1} tokens \(max_position_embeddings"):
            engine.generate(msgs, max_new_tokens=1)
        cfg.max_position_embeddings = n + 3
        with pytest.raises(ContextLengthError, match="at most 3 new tokens fit"):
            engine.generate(msgs, max_new_tokens=4)
        assert engine.generate(msgs, max_new_tokens=3).prompt_tokens == n      # exactly full is fine
        with pytest.raises(ContextLengthError):
            engine.generate(list(range(n)), max_new_tokens=4)                  # raw ids too
    finally:
        cfg.max_position_embeddings = saved


def test_cli_says_the_prompt_is_too_long_in_one_line(folder, tmp_path, capsys):
    small = tmp_path / "small_context"
    shutil.copytree(folder, small)
    cfg = json.loads((small / "config.json").read_text())
    cfg["max_position_embeddings"] = 12
    (small / "config.json").write_text(json.dumps(cfg))
    assert generate_main(["--model", str(small), "--prompt", "a long prompt " * 10, "--dtype", "fp32",
                          "--max-new-tokens", "2"]) == 2
    err = capsys.readouterr().err
    assert "more than the model's context of 12 tokens" in err and "Traceback" not in err
