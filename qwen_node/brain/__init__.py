"""The stand-in brain: a small Qwen3.5-architecture model trained on generated robot missions.

- `phrasing`: instructions in six languages (+ a held-out language mix), object names by the
  perception contract (`<colour>_<shape>`).
- `world`: a symbolic model of the tools (what each returns, in the planner's exact JSON).
- `expert`: the policy that writes the assistant turns (short thinking + one tool call).
- `dataset`: missions -> conversations (ChatMessage lists) -> token ids and loss masks, rendered
  through the engine's chat format at train time.
- `model_config` / `train`: the architecture and the training loop (`qwen-stack train-brain`).
"""
