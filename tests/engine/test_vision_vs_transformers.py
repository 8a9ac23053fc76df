"""Image and video inputs: our vision tower, placeholder splicing and multimodal positions against
transformers (fp32, max |ours - ref| / max |ref| <= 1e-4), and our preprocessing against its image processor."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from qwen_stack.qwen_node.engine.chat import video_placeholder
from qwen_stack.qwen_node.engine.loader import load_model
from qwen_stack.qwen_node.engine.preprocess import (preprocess_image, preprocess_video, sample_frame_indices,
                                                    smart_resize)

TOL = 1e-4


def rel_err(ours, ref):
    return ((ours - ref).abs().max() / ref.abs().max()).item()


def random_image(h, w, seed):
    return (np.random.RandomState(seed).rand(h, w, 3) * 255).astype(np.uint8)


def prompt_with(cfg, runs, seed):
    """Text tokens interleaved with placeholder runs: runs = [(token, count, text tokens before it), ...]."""
    g = torch.Generator().manual_seed(seed)
    ids, types = [], []
    for token, count, before in runs:
        text = torch.randint(0, 200, (before,), generator=g).tolist()
        ids += text + [cfg.vision_start_token_id] + [token] * count + [cfg.vision_end_token_id]
        kind = 1 if token == cfg.image_token_id else 2
        types += [0] * (before + 1) + [kind] * count + [0]
    tail = torch.randint(0, 200, (5,), generator=g).tolist()
    return torch.tensor(ids + tail), torch.tensor(types + [0] * 5)


@pytest.mark.parametrize("name", ["moe_vl", "dense_vl"])
def test_image_logits_match_transformers(checkpoints, name):
    folder, ref = checkpoints[name]
    model = load_model(folder, dtype=torch.float32, progress=False)
    cfg = model.config
    a = preprocess_image(random_image(64, 96, 1), min_pixels=32 * 32, max_pixels=64 * 96)      # grid (1, 4, 6)
    b = preprocess_image(random_image(100, 40, 2), min_pixels=32 * 32, max_pixels=128 * 64)     # tall image
    ids, types = prompt_with(cfg, [(cfg.image_token_id, a.num_tokens, 4), (cfg.image_token_id, b.num_tokens, 3)], 3)
    with torch.no_grad():
        want = ref(input_ids=ids[None], pixel_values=torch.cat([a.patches, b.patches]),
                   image_grid_thw=torch.tensor([a.grid, b.grid]), mm_token_type_ids=types[None]).logits
        embeds, pos, _ = model.prepare_multimodal(ids, images=[a, b])
        got = model(inputs_embeds=embeds, position_ids=pos[:, None])
    assert rel_err(got, want) <= TOL


def test_video_logits_match_transformers(checkpoints):
    folder, ref = checkpoints["moe_vl"]
    model = load_model(folder, dtype=torch.float32, progress=False)
    cfg = model.config
    frames = np.stack([random_image(48, 80, 10 + i) for i in range(7)])
    v = preprocess_video(frames, video_fps=4.0, target_fps=2.0, min_pixels=32 * 32, max_pixels=64 * 64)
    t, h, w = v.grid
    per_frame = h * w // 4
    # the video's frames are separate runs (timestamp text between them), as the chat format writes them
    ids, types = prompt_with(cfg, [(cfg.video_token_id, per_frame, 3)] * t, 4)
    with torch.no_grad():
        want = ref(input_ids=ids[None], pixel_values_videos=v.patches, video_grid_thw=torch.tensor([v.grid]),
                   mm_token_type_ids=types[None]).logits
        embeds, pos, _ = model.prepare_multimodal(ids, videos=[v])
        got = model(inputs_embeds=embeds, position_ids=pos[:, None])
    assert rel_err(got, want) <= TOL


def test_image_decode_positions_continue_after_prompt(checkpoints):
    """Greedy decode after an image prompt with caches equals recomputing the whole sequence."""
    folder, _ = checkpoints["moe_vl"]
    model = load_model(folder, dtype=torch.float32, progress=False)
    cfg = model.config
    img = preprocess_image(random_image(64, 64, 5), min_pixels=32 * 32, max_pixels=64 * 64)
    ids, _ = prompt_with(cfg, [(cfg.image_token_id, img.num_tokens, 2)], 6)
    with torch.no_grad():
        embeds, pos, nxt = model.prepare_multimodal(ids, images=[img])
        first = model(inputs_embeds=embeds, position_ids=pos[:, None], last_only=True)[0, -1].argmax()
        step = model(first.view(1, 1), position_ids=torch.full((3, 1, 1), nxt), start=len(ids))[0, -1]
        embeds2, pos2, _ = model.prepare_multimodal(torch.cat([ids, first.view(1)]), images=[img])
        full = model(inputs_embeds=embeds2, position_ids=pos2[:, None])[0, -1]
    assert rel_err(step, full) <= TOL


def test_image_preprocessing_matches_transformers_processor():
    from transformers import Qwen2VLImageProcessorPil
    proc = Qwen2VLImageProcessorPil(patch_size=16, merge_size=2, temporal_patch_size=2, image_mean=[0.5] * 3,
                                    image_std=[0.5] * 3, size={"shortest_edge": 65536, "longest_edge": 16777216})
    for h, w in [(100, 150), (480, 640), (33, 700)]:
        img = random_image(h, w, h)
        want = proc(images=[img], return_tensors="pt")
        ours = preprocess_image(img)
        assert list(ours.grid) == want["image_grid_thw"][0].tolist()
        assert torch.allclose(ours.patches, want["pixel_values"], atol=1e-6)


def test_smart_resize_by_hand():
    assert smart_resize(480, 640) == (480, 640)                      # already multiples of 32, within budget
    # 96x160 is below 65536 px: scale by sqrt(65536 / 15000) = 2.09 -> 209x313.5 -> ceil to 32: 224x320
    assert smart_resize(100, 150) == (224, 320)
    h, w = smart_resize(4000, 6000, max_pixels=1024 * 1024)
    assert h % 32 == 0 and w % 32 == 0 and h * w <= 1024 * 1024 and abs(w / h - 1.5) < 0.05
    with pytest.raises(ValueError, match="aspect ratio"):
        smart_resize(10, 5000)


def test_video_sampling_padding_and_timestamps():
    # 10 frames at 4 fps, sampled at 2 fps -> 5 frames (indices 0,2,4,6,8) -> padded to 6 by repeating 8
    assert sample_frame_indices(10, 4.0, 2.0, min_frames=4) == [0, 2, 4, 6, 8]
    frames = np.stack([random_image(32, 32, i) for i in range(10)])
    v = preprocess_video(frames, video_fps=4.0, min_pixels=32 * 32, max_pixels=32 * 32)
    assert v.grid == (3, 2, 2)
    assert v.timestamps == [0.25, 1.25, 2.0]                         # (0+0.5)/2, (1+1.5)/2, (2+2)/2
    assert video_placeholder(v.timestamps, 1).startswith("<0.2 seconds><|vision_start|><|video_pad|><|vision_end|>")


def test_bad_image_is_rejected():
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        preprocess_image(np.zeros((10, 10), dtype=np.uint8))
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        preprocess_image(np.zeros((10, 10, 3), dtype=np.float32))
