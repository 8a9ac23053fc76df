"""The single-token decode step as one torch.compile (inductor) graph: ~3x the eager decode speed on CPU.

Why: at batch 1 a decode step reads every active weight once, so its speed is memory bandwidth. Eager PyTorch
on our CPUs gets about half of it: MKL's sgemv runs single-threaded (~20 GB/s, where a plain streaming read
gets ~44 GB/s on 2 cores), and ~2,000 small ops per token each pay dispatch overhead. Compiled, every
single-row projection and the selected experts become fused, vectorised, multi-threaded reductions
(model.matvec; the expert gather is folded into the weight loads, nothing is copied) and the small ops fuse into
a few loops. The eager model stays the reference: tests compare this step with it on fresh random checkpoints.

Shapes: compiled with dynamic=True, so the cache position and the cache length are symbolic and one graph serves
every position and cache size; parameters stay static (torch's default), which the generated loops specialise on.
Cost: the first decode step compiles (tens of seconds on 2 cores; inductor keeps the generated code in its cache
directory, so a restart is quicker). Call `warm_up` at start-up so no request pays for it. Needs a C++ compiler
(g++) at run time, as inductor on CPU does.
"""
from __future__ import annotations

import time

import torch

from .model import Qwen35ForGeneration


def _decode(model: Qwen35ForGeneration, input_ids, position_ids, start: int):
    """input_ids [1, 1], position_ids [3, 1, 1] -> logits [1, 1, V]; advances the caches at `start`."""
    h = model.text(model.embed(input_ids), position_ids, start)
    return model.lm_head(h.reshape(1, -1)).view(1, 1, -1)


# torch.compile options tried in order by enable_with_warm_up. The C++ wrapper (the code that calls the generated
# kernels) saves ~5% per bf16 step over the Python one; compiling it takes longer the first time (cached after).
VARIANTS = (("C++ wrapper", {"cpp_wrapper": True}), ("Python wrapper", {}))


def enable(model: Qwen35ForGeneration, options: dict = VARIANTS[0][1]) -> None:
    """Route the model's batch-1 single-token calls (generate's decode steps) through the compiled step."""
    compiled = torch.compile(_decode, dynamic=True, options=dict(options))
    model.decode_step = lambda input_ids, position_ids, start: compiled(model, input_ids, position_ids, start)


def disable(model: Qwen35ForGeneration) -> None:
    model.decode_step = None


@torch.inference_mode()
def warm_up(model: Qwen35ForGeneration) -> float:
    """Compile now (a short generation) instead of on the first request; returns the seconds it took.
    Leaves nothing behind that matters: the next prompt is prefilled from position 0."""
    from .generate import SamplingParams, generate
    t0 = time.perf_counter()
    generate(model, [0, 1, 2], SamplingParams(max_new_tokens=3))
    return time.perf_counter() - t0


def enable_with_warm_up(model: Qwen35ForGeneration, log=print) -> bool:
    """enable + warm_up; if compiling fails (no C++ compiler, a layer inductor cannot trace) the model keeps
    decoding eagerly and the reason is logged. Returns whether the compiled step is in use."""
    errors = []
    for name, options in VARIANTS:
        enable(model, options)
        try:
            seconds = warm_up(model)
        except Exception as exc:  # noqa: BLE001 - any compile failure must leave a working (eager) model
            disable(model)
            errors.append(f"{name}: {type(exc).__name__}: {exc}")
            continue
        log(f"compiled decode step ready ({name}, {seconds:.1f} s to compile)")
        return True
    log("compiled decode step unavailable, decoding eagerly: " + "; ".join(errors))
    return False
