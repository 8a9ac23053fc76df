"""The brain's first turn on given instructions: does it call a tool or answer (refuse) straight away?

A quick probe of one decision, without the simulator: the planner's system prompt and tools, the
instruction as the user turn, greedy decoding. Used to find which phrasings a checkpoint refuses
(models/README.md: "Schaff bitte ..."). `{obj}` in an instruction is filled with each --objects entry.

    python -m qwen_stack.rosenv .venv/bin/python bench/brain_first_turn.py \
        "Schaff bitte {obj} zum blauen Quadrat." "Bring {obj} zum blauen Quadrat." \
        --objects "den roten Würfel,den roten Ball"
"""
from __future__ import annotations

import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def first_turn(eng, instruction: str, tools: list[dict], system_prompt: str, max_new_tokens: int = 96) -> str:
    """The model's first turn (thinking + call or answer) for one instruction."""
    from qwen_stack.qwen_node.agent.backends.local import chat_dicts
    from qwen_stack.qwen_node.agent.planner import ChatMessage

    chat, _ = chat_dicts([ChatMessage("system", system_prompt), ChatMessage("user", instruction)], vision=False)
    text, _ = eng.stream(chat, [], tools, lambda s: None, lambda: False, max_new_tokens, 0.0, True)
    return text


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("instructions", nargs="+", help="user instructions; {obj} is filled with each --objects entry")
    ap.add_argument("--objects", default="", help="comma list of noun phrases for {obj}")
    ap.add_argument("--model", default=str(ROOT / "models" / "brain"), help="checkpoint folder (bf16 or NVFP4)")
    ap.add_argument("--show", action="store_true", help="print each turn's text")
    a = ap.parse_args(argv)

    import torch

    from qwen_stack.qwen_node.agent.backends.local import LocalChatEngine
    from qwen_stack.qwen_node.brain import dataset as D

    torch.set_num_threads(1)
    eng = LocalChatEngine(a.model, device="cpu")
    tools, sp = D.planner_tools(), D.default_system_prompt()
    objects = [o.strip() for o in a.objects.split(",") if o.strip()] or [""]
    for ins in a.instructions:
        verdicts = []
        for obj in objects if "{obj}" in ins else [""]:
            text = first_turn(eng, ins.replace("{obj}", obj), tools, sp)
            verdicts.append("call" if "<tool_call>" in text else "ANSWER")
            if a.show:
                print(f"--- {ins.replace('{obj}', obj)}\n{text}")
        print(f"{ins:50} {' '.join(verdicts)}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
