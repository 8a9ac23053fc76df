"""`qwen-stack serve --model DIR`: our engine behind an OpenAI-compatible HTTP API (wiring only).

Binds 127.0.0.1 by default; another host must be asked for with --host, and then an API key
(--api-key-env NAME: the key is read from that environment variable) is required.
"""
from __future__ import annotations

import argparse
import os
import socket
import sys


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="qwen-stack serve", description=__doc__)
    ap.add_argument("--model", required=True, help="checkpoint directory (HF layout)")
    ap.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--served-model-name", default="qwen3.5", help="model id reported and accepted")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--compile-decode", action="store_true",
                    help="decode through the torch.compile'd step (~3x faster decode; compiles at start)")
    ap.add_argument("--max-tokens", type=int, default=1024,
                    help="max_tokens of a request that gives none (must fit the model's context)")
    ap.add_argument("--api-key-env", default="", help="NAME of an environment variable holding the API key")
    args = ap.parse_args(argv)

    if not os.path.isdir(args.model):
        print(f"qwen-stack serve: --model {args.model!r} is not a directory", file=sys.stderr)
        return 2
    api_key = None
    if args.api_key_env:
        api_key = os.environ.get(args.api_key_env)
        if not api_key:
            print(f"qwen-stack serve: environment variable {args.api_key_env} is empty", file=sys.stderr)
            return 2
    if args.host not in ("127.0.0.1", "localhost", "::1") and not api_key:
        print(f"qwen-stack serve: binding {args.host} exposes the model beyond this machine; give --api-key-env",
              file=sys.stderr)
        return 2
    if args.max_tokens <= 0:
        print("qwen-stack serve: --max-tokens must be > 0", file=sys.stderr)
        return 2

    # Listen before the model loads: a port in use is said at once, naming it and the option.
    sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((args.host, args.port))
    except OSError as exc:
        sock.close()
        print(f"qwen-stack serve: cannot listen on {args.host} port {args.port}: {exc.strerror}; "
              "choose another with --port PORT", file=sys.stderr)
        return 2

    import uvicorn

    from qwen_stack.qwen_node.agent.backends.local import LocalChatEngine
    from qwen_stack.qwen_node.engine.openai_api import create_app

    try:
        engine = LocalChatEngine(args.model, args.device, compile_decode=args.compile_decode)
    except ValueError as exc:       # ConfigError, CheckpointError, ChatFormatError: they name the file
        print(f"qwen-stack serve: {exc}", file=sys.stderr)
        return 2
    if args.max_tokens >= engine.context_length:
        print(f"qwen-stack serve: --max-tokens {args.max_tokens} does not fit the model's context of "
              f"{engine.context_length} tokens (max_position_embeddings)", file=sys.stderr)
        return 2
    app = create_app(engine, args.served_model_name, args.max_tokens, api_key)
    print(f"qwen-stack serve: {args.model} as {args.served_model_name!r} on http://{args.host}:{args.port}/v1",
          file=sys.stderr, flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
