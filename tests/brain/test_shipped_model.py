"""The shipped stand-in brain (models/brain, bf16; models/brain-nvfp4): the real architecture, loaded
by transformers with the engine's logits, small enough for the repository, and acting on a
held-out mission prompt through the engine and the CLI."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from qwen_stack.paths import SOURCE_ROOT

MODELS = SOURCE_ROOT / "models"
BF16, NVFP4 = MODELS / "brain", MODELS / "brain-nvfp4"
MISSION = "Porta la palla gialla al quadrato verde."   # Italian; not a training sentence


def _prompt_messages():
    from qwen_stack.qwen_node.brain import dataset as D

    return [{"role": "system", "content": D.default_system_prompt()}, {"role": "user", "content": MISSION}], \
        D.planner_tools()


def test_architecture_is_qwen35_moe_hybrid():
    cfg = json.loads((BF16 / "config.json").read_text())
    assert cfg["architectures"] == ["Qwen3_5MoeForCausalLM"]
    lt = cfg["layer_types"]
    assert len(lt) % 4 == 0 and all(lt[i:i + 4] == ["linear_attention"] * 3 + ["full_attention"]
                                    for i in range(0, len(lt), 4))
    assert cfg["num_experts"] > cfg["num_experts_per_tok"] >= 1 and cfg["shared_expert_intermediate_size"] > 0
    vmap = json.loads((BF16 / "vocab_map.json").read_text())
    from qwen_stack.qwen_node.engine.tokenizer import QwenTokenizer

    assert cfg["vocab_size"] == len(vmap["ids"]) and vmap["original_vocab_size"] == QwenTokenizer().vocab_size


def test_shipped_size_within_30_mb():
    total = sum(f.stat().st_size for d in (BF16, NVFP4) for f in d.iterdir() if f.is_file())
    assert total <= 30e6, total
    assert (NVFP4 / "hf_quant_config.json").is_file() and (NVFP4 / "vocab_map.json").is_file()
    assert "qwen-stack train-brain" in (MODELS / "README.md").read_text()
    assert "qwen-stack quantize" in (MODELS / "README.md").read_text()


def test_transformers_loads_it_and_gives_the_engines_logits():
    import transformers as tf

    from qwen_stack.qwen_node.engine.engine import Engine

    engine = Engine.from_pretrained(BF16, dtype=torch.float32, progress=False)
    msgs, tools = _prompt_messages()
    ids = torch.tensor([engine.build_prompt(msgs, tools=tools).token_ids])
    ref = tf.AutoModelForCausalLM.from_pretrained(str(BF16), dtype=torch.float32).eval()
    assert type(ref).__name__ == "Qwen3_5MoeForCausalLM"
    with torch.no_grad():
        want = ref(input_ids=ids).logits
        got = engine.model(ids)
    assert ((got - want).abs().max() / want.abs().max()).item() <= 1e-4


@pytest.mark.parametrize("folder", [BF16, NVFP4], ids=["bf16", "nvfp4"])
def test_first_turn_of_a_held_out_mission_is_a_valid_detect_objects_call(folder):
    from qwen_stack.qwen_node.agent.output_parser import parse_output
    from qwen_stack.qwen_node.engine.engine import Engine

    engine = Engine.from_pretrained(folder, dtype=torch.float32, progress=False)
    msgs, tools = _prompt_messages()
    res = engine.generate(msgs, tools=tools, max_new_tokens=120)
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in tools}
    turn = parse_output(res.text, schemas, start_in_thinking=True)
    assert not turn.errors, res.text
    assert [c.name for c in turn.calls] == ["detect_objects"], res.text


def test_first_turn_names_the_mission_objects():   # an Italian held-out instruction (the previous model misread it)
    from qwen_stack.qwen_node.agent.output_parser import parse_output
    from qwen_stack.qwen_node.engine.engine import Engine

    engine = Engine.from_pretrained(BF16, dtype=torch.float32, progress=False)
    msgs, tools = _prompt_messages()
    res = engine.generate(msgs, tools=tools, max_new_tokens=120)
    turn = parse_output(res.text, {t["function"]["name"]: t["function"]["parameters"] for t in tools},
                        start_in_thinking=True)
    assert "yellow_ball" in turn.thinking and "green_square" in turn.thinking, res.text


def test_generate_cli_runs_the_shipped_model():
    out = subprocess.run([sys.executable, "-m", "qwen_stack.cli", "generate", "--model", str(BF16), "--prompt",
                          "Bring the red cube to the blue square.", "--max-new-tokens", "24"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "decode:" in out.stdout + out.stderr and len(out.stdout.strip()) > 0


def test_first_turn_eval_reads_the_sim_missions_names(tmp_path):
    """bench/brain_eval.py --sim-first-turns: the shipped NVFP4 brain's first thought on the first simulator
    held-out missions names their target and area, and the rows say what it thought."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("brain_eval", SOURCE_ROOT / "bench" / "brain_eval.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    res = bench.first_turn_eval(NVFP4, 3, 0, tmp_path, "nvfp4")
    rows = [json.loads(x) for x in (tmp_path / "first_turns_nvfp4.jsonl").read_text().splitlines()]
    assert [r["mission"] for r in rows] == ["none-0", "none-1", "none-2"]
    assert res == {"missions": 3, "right": 1.0, "wrong": []}, rows
    assert all(r["target"] in r["thought"] and r["area"] in r["thought"] for r in rows)
