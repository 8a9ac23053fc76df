"""The Engine API and the `qwen-stack generate` CLI end to end, on a tiny checkpoint with Qwen's full vocabulary
(so the real tokenizer's ids, placeholders included, are valid)."""
from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from qwen_stack.qwen_node.engine.cli import generate_main
from qwen_stack.qwen_node.engine.engine import Engine, split_reasoning
from qwen_stack.qwen_node.engine.generate import SamplingParams, generate

from tiny_checkpoints import make_checkpoint

IMAGE_PAD, VIDEO_PAD, VISION_START, VISION_END = 248056, 248057, 248053, 248054


@pytest.fixture(scope="module")
def full_vocab_ckpt(tmp_path_factory):
    folder = tmp_path_factory.mktemp("full_vocab") / "ckpt"
    make_checkpoint(folder, "Qwen3_5MoeForConditionalGeneration", seed=7, vocab=248320, hidden=32,
                    layer_types=("linear_attention", "full_attention"))
    return folder


@pytest.fixture(scope="module")
def engine(full_vocab_ckpt):
    return Engine.from_pretrained(full_vocab_ckpt, dtype=torch.float32, progress=False,
                                  image_min_pixels=32 * 32, image_max_pixels=64 * 64,
                                  video_min_pixels=32 * 32, video_max_pixels=32 * 64)


def image(seed, h=64, w=64):
    return (np.random.RandomState(seed).rand(h, w, 3) * 255).astype(np.uint8)


def test_image_prompt_and_generation_match_the_pieces(engine):
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is ahead?"}]}]
    prompt = engine.build_prompt(msgs, images=[image(1)])
    ids = prompt.token_ids
    n = prompt.images[0].num_tokens                                  # 64x64 px -> 4x4 patches -> 4 tokens
    assert n == 4
    at = ids.index(VISION_START)
    assert ids[at:at + n + 2] == [VISION_START] + [IMAGE_PAD] * n + [VISION_END]
    streamed = []
    res = engine.generate(msgs, images=[image(1)], max_new_tokens=6,
                          on_token=lambda t, d: streamed.append(d))
    embeds, pos, nxt = engine.model.prepare_multimodal(ids, prompt.images)
    direct = generate(engine.model, ids, SamplingParams(max_new_tokens=6, stop_token_ids=engine.stop_token_ids),
                      inputs_embeds=embeds, position_ids=pos, next_position=nxt)
    assert res.token_ids == direct.token_ids
    assert "".join(streamed) == res.text
    assert res.prompt_tokens == len(ids)


def test_video_prompt_has_one_timestamped_run_per_frame_pair(engine):
    frames = np.stack([image(i, 32, 64) for i in range(8)])         # 8 frames at 4 fps -> 4 sampled -> 2 pairs
    msgs = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "Describe."}]}]
    prompt = engine.build_prompt(msgs, videos=[(frames, 4.0)], enable_thinking=False)
    assert prompt.videos[0].grid == (2, 2, 4)
    assert prompt.text.count("<|vision_start|>") == 2
    assert "<0.2 seconds><|vision_start|><|video_pad|><|video_pad|><|vision_end|>" in prompt.text
    res = engine.generate(msgs, videos=[(frames, 4.0)], max_new_tokens=3, enable_thinking=False)
    assert len(res.token_ids) <= 3


def test_token_ids_input_and_cancel(engine):
    cancel = threading.Event()
    cancel.set()
    res = engine.generate([9707, 11, 1879], max_new_tokens=10, cancel=cancel)
    assert res.finish_reason == "cancelled" and len(res.token_ids) == 1


def test_bad_inputs_are_rejected(engine):
    msgs = [{"role": "user", "content": [{"type": "image"}]}]
    with pytest.raises(ValueError, match="1 image and 0 video parts but 0 images"):
        engine.generate(msgs)
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        engine.generate(msgs, images=[np.zeros((8, 8), dtype=np.uint8)])
    with pytest.raises(ValueError, match="outside the model's vocabulary"):
        engine.generate([300000])


def test_split_reasoning():
    assert split_reasoning("I look.\n</think>\n\nA wall.") == ("I look.", "A wall.")
    assert split_reasoning("Just text") == ("", "Just text")


def test_cli_streams_and_prints_speeds(full_vocab_ckpt, tmp_path, capsys):
    import cv2
    png = tmp_path / "frame.png"
    cv2.imwrite(str(png), image(3))
    rc = generate_main(["--model", str(full_vocab_ckpt), "--prompt", "Hi", "--image", str(png),
                        "--max-new-tokens", "4", "--dtype", "fp32", "--no-think"])
    err = capsys.readouterr().err
    assert rc == 0
    assert "prefill:" in err and "tokens/s" in err and "decode:" in err


def test_cli_reports_bad_model_folder(tmp_path, capsys):
    rc = generate_main(["--model", str(tmp_path), "--prompt", "Hi"])
    assert rc == 2
    assert "config.json" in capsys.readouterr().err
