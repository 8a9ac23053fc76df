"""`Engine`: the small Python API the agent node uses — chat messages, images, video and tools in, text out.

    engine = Engine.from_pretrained("/models/Qwen3.5-35B-A3B", dtype=torch.bfloat16)
    result = engine.generate([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is ahead?"}]}],
                             images=[frame_rgb_uint8], tools=[...], enable_thinking=False, max_new_tokens=128,
                             on_token=lambda tok, text: print(text, end=""), cancel=stop_event)
    result.text, result.token_ids, result.prefill_tokens_per_s, result.decode_tokens_per_s
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import torch

from .chat import expand_placeholders, render_chat, video_placeholder
from .chat_template import ChatTemplate
from .generate import GenerationResult, SamplingParams, generate
from .loader import load_model
from .model import LayerBuilders, Qwen35ForGeneration
from .preprocess import (IMAGE_MAX_PIXELS, IMAGE_MIN_PIXELS, MERGE, PATCH, TEMPORAL_PATCH, VIDEO_MAX_PIXELS,
                         VIDEO_MIN_PIXELS, VisionInput, preprocess_image, preprocess_video)
from .tokenizer import QwenTokenizer


@dataclass
class Prompt:
    token_ids: list[int]
    images: list[VisionInput]
    videos: list[VisionInput]
    text: str                       # the rendered prompt (placeholders expanded)


def split_reasoning(text: str) -> tuple[str, str]:
    """Generated text after a "<think>\\n" prompt -> (reasoning, answer). No "</think>": all answer."""
    if "</think>" not in text:
        return "", text
    reasoning, answer = text.split("</think>", 1)
    return reasoning.replace("<think>", "").strip("\n"), answer.lstrip("\n")


class Engine:
    def __init__(self, model: Qwen35ForGeneration, tokenizer: QwenTokenizer | None = None,
                 image_min_pixels: int = IMAGE_MIN_PIXELS, image_max_pixels: int = IMAGE_MAX_PIXELS,
                 video_min_pixels: int = VIDEO_MIN_PIXELS, video_max_pixels: int = VIDEO_MAX_PIXELS,
                 video_fps: float = 2.0, chat_template: ChatTemplate | None = None):
        self.model = model
        self.chat_template = chat_template     # the checkpoint's own template; None: the built-in Qwen3.5 format
        self.tokenizer = tokenizer or QwenTokenizer()
        self.image_pixels = (image_min_pixels, image_max_pixels)    # per image budget after resizing
        self.video_pixels = (video_min_pixels, video_max_pixels)    # per frame budget
        self.video_fps = video_fps                                  # frames sampled per second of video
        cfg = model.config
        tok = self.tokenizer
        for field_name, special in (("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
                                    ("vision_start_token_id", "<|vision_start|>")):
            if getattr(cfg, field_name) != tok.token_id(special):
                raise ValueError(f"config.json {field_name}={getattr(cfg, field_name)} but the tokenizer has "
                                 f"{special}={tok.token_id(special)}")
        self.stop_token_ids = (tok.im_end_id, tok.endoftext_id)
        v = cfg.vision
        if v is not None and (v.patch_size, v.temporal_patch_size, v.spatial_merge_size) != (PATCH, TEMPORAL_PATCH, MERGE):
            raise ValueError(f"vision_config patch_size/temporal_patch_size/spatial_merge_size = {v.patch_size}/"
                             f"{v.temporal_patch_size}/{v.spatial_merge_size}; the preprocessor supports "
                             f"{PATCH}/{TEMPORAL_PATCH}/{MERGE}")
        self._lock = threading.Lock()       # one generation at a time: the caches live in the model

    @classmethod
    def from_pretrained(cls, model_dir: str | Path, dtype: torch.dtype = torch.bfloat16, device: str = "cpu",
                        builders: LayerBuilders | None = None, progress: bool = True, layer_backend=None,
                        **kwargs) -> "Engine":
        """Plain and NVFP4 checkpoints alike (detected from hf_quant_config.json). `builders` replaces the
        checkpoint's own layer builders; `layer_backend` wraps them (see nvfp4_loader.load_model_auto).
        A chat template shipped in the folder (chat_template.jinja, ...) is used for prompts."""
        kwargs.setdefault("chat_template", ChatTemplate.from_checkpoint(model_dir))
        if kwargs.get("tokenizer") is None:   # a pruned-vocabulary checkpoint ships vocab_map.json
            from .vocab_map import tokenizer_for
            kwargs["tokenizer"] = tokenizer_for(model_dir)
        if builders is not None:
            return cls(load_model(model_dir, dtype=dtype, device=device, builders=builders, progress=progress),
                       **kwargs)
        from .nvfp4_loader import load_model_auto

        return cls(load_model_auto(model_dir, dtype=dtype, device=device, progress=progress,
                                   layer_backend=layer_backend), **kwargs)

    def render(self, messages: list[dict], tools=None, enable_thinking: bool = True) -> tuple[str, int, int]:
        """Messages -> (prompt text with image/video placeholders, images, videos), by the checkpoint's
        template when it ships one."""
        render = self.chat_template.render if self.chat_template is not None else render_chat
        return render(messages, tools=tools, add_generation_prompt=True, enable_thinking=enable_thinking)

    def build_prompt(self, messages: list[dict], images=(), videos=(), tools=None,
                     enable_thinking: bool = True, prefix: str = "") -> Prompt:
        """images: HxWx3 uint8 arrays; videos: (frames [F, H, W, 3] uint8, fps) pairs; both in message order.
        prefix: the start of the assistant's answer, written after the generation prompt (the model continues it)."""
        text, n_img, n_vid = self.render(messages, tools=tools, enable_thinking=enable_thinking)
        text += prefix
        if n_img != len(images) or n_vid != len(videos):
            raise ValueError(f"messages have {n_img} image and {n_vid} video parts but {len(images)} images and "
                             f"{len(videos)} videos were given")
        if (images or videos) and self.model.visual is None:
            raise ValueError(f"{self.model.config.architecture} has no vision tower")
        imgs = [preprocess_image(im, *self.image_pixels) for im in images]
        vids = []
        for i, v in enumerate(videos):
            if not (isinstance(v, tuple) and len(v) == 2):
                raise ValueError(f"videos[{i}]: expected a (frames, fps) pair")
            vids.append(preprocess_video(v[0], float(v[1]), self.video_fps, *self.video_pixels))
        merged_per_frame = [v.grid[1] * v.grid[2] // (MERGE * MERGE) for v in vids]
        text = expand_placeholders(text, [im.num_tokens for im in imgs],
                                   [video_placeholder(v.timestamps, n) for v, n in zip(vids, merged_per_frame)])
        return Prompt(self.tokenizer.encode(text), imgs, vids, text)

    def generate(self, messages_or_ids, images=(), videos=(), tools=None, enable_thinking: bool = True,
                 max_new_tokens: int = 256, temperature: float = 0.0, top_p: float = 1.0, top_k: int = 0,
                 seed: int | None = None, stop_strings: tuple[str, ...] = (), on_token=None,
                 cancel=None, prefix: str = "") -> GenerationResult:
        """Chat messages (or raw prompt token ids) -> GenerationResult (text without the stop token).
        Calls from several threads are served one after another; `cancel` (threading.Event or callable)
        stops a running generation after the current token; `prefix` starts the answer (see build_prompt).
        Raises ContextLengthError when the prompt plus max_new_tokens exceed the model's context."""
        # ids past the tokenizer's table (the embedding is padded to a multiple of 64) are never sampled
        params = SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, top_k=top_k,
                                seed=seed, stop_token_ids=self.stop_token_ids, stop_strings=tuple(stop_strings),
                                vocab_limit=self.tokenizer.vocab_size)
        if messages_or_ids and isinstance(messages_or_ids[0], int):
            if images or videos or tools or prefix:
                raise ValueError("images, videos, tools and prefix need chat messages, not token ids")
            prompt = Prompt(list(messages_or_ids), [], [], "")
        else:
            prompt = self.build_prompt(messages_or_ids, list(images), list(videos), tools, enable_thinking, prefix)
        vocab = self.model.config.text.vocab_size
        if any(not 0 <= t < vocab for t in prompt.token_ids):
            raise ValueError(f"prompt has token ids outside the model's vocabulary (0..{vocab - 1})")
        stops = set(self.stop_token_ids)
        detok = lambda ids: self.tokenizer.decode([i for i in ids if i not in stops])  # noqa: E731
        with self._lock:
            embeds = positions = next_pos = None
            if prompt.images or prompt.videos:
                with torch.inference_mode():
                    embeds, positions, next_pos = self.model.prepare_multimodal(prompt.token_ids, prompt.images,
                                                                                prompt.videos)
            return generate(self.model, prompt.token_ids, params, inputs_embeds=embeds, position_ids=positions,
                            next_position=next_pos, detokenize=detok, on_token=on_token, cancel=cancel)
