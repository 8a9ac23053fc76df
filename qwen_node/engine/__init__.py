"""Qwen3.5 inference engine: checkpoint loading, compact model code, generation, chat inputs, vision.

Public entry points: `Engine` (engine.py), `load_model` (loader.py), `generate_main` (cli.py); the
OpenAI-compatible server over it: openai_api.py (the app), serve.py (`qwen-stack serve`)."""
