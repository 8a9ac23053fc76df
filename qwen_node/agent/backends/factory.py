"""Build the backend named by the settings (imports heavy backends only when chosen)."""
from __future__ import annotations

from qwen_stack.qwen_node.agent.config import AgentSettings, config_path


def make_backend(s: AgentSettings):
    if s.backend == "replay":
        from qwen_stack.qwen_node.agent.backends.replay import ReplayBackend, load_replay_script

        return ReplayBackend(load_replay_script(config_path(s.replay_script)), s.replay_chunk_chars,
                             name=f"replay:{s.replay_script}")
    if s.backend == "local":
        from qwen_stack.qwen_node.agent.backends.local import LocalEngineBackend

        return LocalEngineBackend.from_settings(s)
    from qwen_stack.qwen_node.agent.backends.openai_chat import OpenAIChatBackend

    return OpenAIChatBackend.from_settings(s)
