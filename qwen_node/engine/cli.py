"""`qwen-stack generate`: run the engine on a prompt (+ images / videos), stream tokens, print speeds."""
from __future__ import annotations

import argparse
import sys

DTYPES = {"bf16": "bfloat16", "fp32": "float32", "fp16": "float16"}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="qwen-stack generate", description=__doc__)
    p.add_argument("--model", required=True, help="Hugging Face model folder (config.json + safetensors)")
    p.add_argument("--prompt", required=True, help="user message")
    p.add_argument("--system", default=None, help="optional system prompt")
    p.add_argument("--image", action="append", default=[], help="image file (repeatable)")
    p.add_argument("--video", action="append", default=[], help="video file (repeatable)")
    p.add_argument("--no-think", action="store_true", help="disable thinking (empty think block)")
    p.add_argument("--max-new-tokens", type=int, default=512)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    p.add_argument("--device", default="cpu")
    p.add_argument("--compile", action="store_true",
                   help="decode through the torch.compile'd step (~3x faster decode; compiles first, seconds to a minute)")
    return p


def read_image(path: str):
    import cv2
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"--image {path}: cannot read it as an image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_video(path: str):
    import cv2
    import numpy as np
    cap = cv2.VideoCapture(path)
    fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    cap.release()
    if not frames:
        raise ValueError(f"--video {path}: no frames could be read")
    if fps <= 0:
        raise ValueError(f"--video {path}: the file does not state its frame rate")
    return np.stack(frames), fps


def generate_main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    import torch

    from .engine import Engine
    try:
        images = [read_image(p) for p in args.image]
        videos = [read_video(p) for p in args.video]
        engine = Engine.from_pretrained(args.model, dtype=getattr(torch, DTYPES[args.dtype]), device=args.device)
        if args.compile:
            from .compiled_decode import enable_with_warm_up
            enable_with_warm_up(engine.model, log=lambda msg: print(f"qwen-stack generate: {msg}", file=sys.stderr))
        content = [{"type": "image"} for _ in images] + [{"type": "video"} for _ in videos] + \
                  [{"type": "text", "text": args.prompt}]
        messages = ([{"role": "system", "content": args.system}] if args.system else []) + \
                   [{"role": "user", "content": content}]

        def on_token(_tok, text):
            sys.stdout.write(text)
            sys.stdout.flush()

        result = engine.generate(messages, images=images, videos=videos, enable_thinking=not args.no_think,
                                 max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                                 top_p=args.top_p, top_k=args.top_k, seed=args.seed, on_token=on_token)
    except (ValueError, OSError) as exc:
        print(f"qwen-stack generate: {exc}", file=sys.stderr)
        return 2
    print()
    print(f"prefill: {result.prompt_tokens} tokens in {result.prefill_seconds:.3f} s "
          f"({result.prefill_tokens_per_s:.1f} tokens/s)", file=sys.stderr)
    print(f"decode: {len(result.token_ids)} tokens ({max(len(result.token_ids) - 1, 0)} decode steps) in "
          f"{result.decode_seconds:.3f} s "
          f"({result.decode_tokens_per_s:.1f} tokens/s), finished by {result.finish_reason}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(generate_main(sys.argv[1:]))
