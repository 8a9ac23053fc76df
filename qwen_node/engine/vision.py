"""Qwen3.5 vision tower and the multimodal (T/H/W) position ids of the decoder.

Index legend: N patches (all images/frames packed), Dv vision width, Hv heads, m spatial merge size,
(t, h, w) a grid in patches. Patches arrive in merge-block order: for each frame, for each m x m block
(row-major), the m*m patches of the block (row-major) — the order the preprocessor emits.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import VisionConfig


class VisionBlock(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        D = cfg.hidden_size
        self.num_heads = cfg.num_heads
        self.norm1 = nn.LayerNorm(D, eps=1e-6)
        self.norm2 = nn.LayerNorm(D, eps=1e-6)
        self.attn = nn.Module()
        self.attn.qkv = nn.Linear(D, 3 * D)
        self.attn.proj = nn.Linear(D, D)
        self.mlp = nn.Module()
        self.mlp.linear_fc1 = nn.Linear(D, cfg.intermediate_size)
        self.mlp.linear_fc2 = nn.Linear(cfg.intermediate_size, D)

    def forward(self, x, cos, sin, seq_lens: list[int]):
        # x: [N, Dv]; cos, sin: [N, Dh]; attention is block-diagonal over frames (seq_lens)
        N, D = x.shape
        h = self.norm1(x)
        q, k, v = self.attn.qkv(h).view(N, 3, self.num_heads, -1).unbind(1)          # [N, Hv, Dh] each
        qf, kf = q.float(), k.float()
        c, s = cos[:, None].float(), sin[:, None].float()
        q = (qf * c + _rotate_half(qf) * s).to(x.dtype)
        k = (kf * c + _rotate_half(kf) * s).to(x.dtype)
        outs = []
        for qs, ks, vs in zip(q.split(seq_lens), k.split(seq_lens), v.split(seq_lens)):
            o = F.scaled_dot_product_attention(qs.transpose(0, 1), ks.transpose(0, 1), vs.transpose(0, 1))
            outs.append(o.transpose(0, 1).reshape(-1, D))
        x = x + self.attn.proj(torch.cat(outs))
        h = self.norm2(x)
        return x + self.mlp.linear_fc2(F.gelu(self.mlp.linear_fc1(h), approximate="tanh"))


def _rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


class VisionTower(nn.Module):
    """3D patch embedding + interpolated learned positions + 2D rotary ViT blocks + 2x2 patch merger."""

    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.cfg = cfg
        D = cfg.hidden_size
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Module()
        self.patch_embed.proj.weight = nn.Parameter(torch.empty(D, cfg.in_channels, cfg.temporal_patch_size,
                                                                cfg.patch_size, cfg.patch_size))
        self.patch_embed.proj.bias = nn.Parameter(torch.empty(D))
        self.pos_embed = nn.Embedding(cfg.num_position_embeddings, D)
        self.blocks = nn.ModuleList([VisionBlock(cfg) for _ in range(cfg.depth)])
        m2 = cfg.spatial_merge_size ** 2
        self.merger = nn.Module()
        self.merger.norm = nn.LayerNorm(D, eps=1e-6)
        self.merger.linear_fc1 = nn.Linear(D * m2, D * m2)
        self.merger.linear_fc2 = nn.Linear(D * m2, cfg.out_hidden_size)

    def _to_merge_order(self, x, h, w):
        # x: [h, w, ...] raster -> [h*w, ...] in merge-block order
        m = self.cfg.spatial_merge_size
        x = x.reshape(h // m, m, w // m, m, *x.shape[2:]).transpose(1, 2)
        return x.reshape(h * w, *x.shape[4:])

    def position_embeddings(self, grids):
        """Learned square table bilinearly resampled (align_corners) to each (h, w), repeated over t."""
        side = int(self.cfg.num_position_embeddings ** 0.5)
        table = self.pos_embed.weight.view(side, side, -1).permute(2, 0, 1)[None].float()  # [1, Dv, side, side]
        out = []
        for t, h, w in grids:
            grid = F.interpolate(table, size=(h, w), mode="bilinear", align_corners=True)[0].permute(1, 2, 0)
            out.append(self._to_merge_order(grid, h, w).repeat(t, 1))
        return torch.cat(out).to(self.pos_embed.weight.dtype)

    def rotary(self, grids, device):
        """2D rotary: the first half of the rotated dims follows the patch row, the second the column."""
        head_dim = self.cfg.hidden_size // self.cfg.num_heads
        half = head_dim // 2
        inv_freq = 1.0 / (self.cfg.rope_theta ** (torch.arange(0, half, 2, dtype=torch.float32, device=device) / half))
        pos = []
        for t, h, w in grids:
            rows = torch.arange(h, device=device)[:, None].expand(h, w)
            cols = torch.arange(w, device=device)[None, :].expand(h, w)
            rc = self._to_merge_order(torch.stack([rows, cols], -1), h, w)   # [h*w, 2]
            pos.append(rc.repeat(t, 1))
        pos = torch.cat(pos).float()                                        # [N, 2]
        freqs = torch.cat([pos[:, :1] * inv_freq, pos[:, 1:] * inv_freq], dim=-1)   # [N, Dh/2]
        emb = torch.cat([freqs, freqs], dim=-1)
        return emb.cos(), emb.sin()

    def forward(self, pixels, grids):
        """pixels: [N, C*Tp*P*P] patches (preprocess.py); grids: list of (t, h, w) -> [N / m^2, out_hidden]."""
        grids = [tuple(int(v) for v in g) for g in grids]
        w = self.patch_embed.proj.weight
        x = F.linear(pixels.to(w.dtype), w.reshape(w.shape[0], -1), self.patch_embed.proj.bias)   # [N, Dv]
        x = x + self.position_embeddings(grids)
        cos, sin = self.rotary(grids, x.device)
        seq_lens = [h * w_ for t, h, w_ in grids for _ in range(t)]
        for blk in self.blocks:
            x = blk(x, cos, sin, seq_lens)
        m2 = self.cfg.spatial_merge_size ** 2
        x = self.merger.norm(x).view(-1, x.shape[-1] * m2)
        return self.merger.linear_fc2(F.gelu(self.merger.linear_fc1(x)))


def multimodal_position_ids(input_ids, image_grids, video_grids, image_token_id: int, video_token_id: int,
                            merge: int):
    """T/H/W positions of a prompt with image/video placeholder runs (one run per image, one per video frame).

    input_ids: [T] ints; image_grids / video_grids: (t, h, w) patch grids in prompt order (a video's frames
    are t consecutive runs of h*w/merge^2 tokens). Returns (position_ids [3, T] long, next position)."""
    ids = torch.as_tensor(input_ids).tolist()
    # remaining grids per placeholder token, reversed so pop() yields them in prompt order
    frame_grids = {image_token_id: [(int(t), int(h), int(w)) for t, h, w in image_grids][::-1],
                   video_token_id: [(1, int(h), int(w)) for t, h, w in video_grids for _ in range(int(t))][::-1]}
    cols, pos, i = [], 0, 0
    while i < len(ids):
        tok = ids[i]
        if tok in frame_grids:
            if not frame_grids[tok]:
                raise ValueError(f"more placeholder runs of token {tok} than images/video frames given")
            t, h, w = frame_grids[tok].pop()
            gh, gw = h // merge, w // merge
            n = t * gh * gw
            if ids[i:i + n] != [tok] * n:
                raise ValueError(f"placeholder run at {i} is shorter than the {n} tokens its grid {(t, h, w)} needs")
            tt, hh, ww = torch.meshgrid(torch.arange(t), torch.arange(gh), torch.arange(gw), indexing="ij")
            cols.append(torch.stack([tt.flatten(), hh.flatten(), ww.flatten()]) + pos)
            pos += max(gh, gw)
            i += n
        else:
            j = i
            while j < len(ids) and ids[j] not in frame_grids:
                j += 1
            cols.append(torch.arange(pos, pos + j - i).expand(3, -1))
            pos += j - i
            i = j
    if frame_grids[image_token_id] or frame_grids[video_token_id]:
        raise ValueError("fewer placeholder runs than images/video frames given")
    position_ids = torch.cat(cols, dim=1) if cols else torch.zeros(3, 0, dtype=torch.long)
    return position_ids, int(position_ids.max()) + 1 if position_ids.numel() else 0
