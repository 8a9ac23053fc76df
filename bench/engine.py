"""Engine benchmark: ours vs transformers `generate`, side by side in one run, on a small random Qwen3.5-MoE.

    .venv/bin/python bench/engine.py [--quick]

Config: hidden 1024, 8 layers in the 3:1 DeltaNet:attention pattern, 64 experts top-8 (expert width 256,
shared expert 512), 8 query / 2 KV heads of 128, DeltaNet 8 key / 16 value heads of 64, vocab 32768,
random weights (transformers' model, converted through our loader's tensor-source hook).
Rows (fp32 and bf16, batch 1, greedy): prefill tokens/s (256-token prompt), decode tokens/s (1000 / median
ms between generated tokens, 48 new tokens), peak RSS growth during the call (a separate untimed run).
"ours" decodes with the compiled step (its compile time, paid once at warm-up, is shown), "eager" is the
same engine without it. Ours and transformers run interleaved for several rounds and each keeps its best
round, so a busy shared machine hurts both alike. A memory-floor table follows: weights read per token
over the host's measured read bandwidth. Then ours: decode time per token with the caches holding 1K, 4K,
16K and 32K tokens of context (caches filled with random keys/values/states, then timed decode steps,
best of 3 rounds of 12 steps; decode cost depends on the context length, not on its content).

NVFP4 (skip with --no-nvfp4): the bf16 model quantized with `qwen-stack quantize`'s default preset (every linear
but the router, gates, DeltaNet a/b, embeddings and lm_head), loaded packed; its decode runs the fused 4-bit
kernel (kernels/nvfp4_matvec.c), its prefill the dequantize-a-tile-then-GEMM path. Row "nvfp4+head": the same
with `--lm-head nvfp4` (lm_head packed too, through the same kernel). A table of fp32, bf16 and both NVFP4 models
of the same weights, ours compiled and eager, in interleaved rounds (best and spread over the rounds), with the
NVFP4/bf16 ratios; the NVFP4 rows join the memory-floor table (their packed bytes per token).
--demo DIR adds a shipped NVFP4 model folder: its decode tokens/s in NVFP4 and in bf16 (its bf16 original when
the folder beside it is DIR without "-nvfp4", as models/brain for models/brain-nvfp4; else the NVFP4 weights
dequantized once at load); by default the first NVFP4 folder under models/, if any.

--quant: the NVFP4 comparison alone, in a few minutes on a 2-core host: --quick --no-hf, 3 rounds, 1 torch
thread (every row alike, so a core busy with other work hurts all rows alike).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "engine"))

from qwen_stack.qwen_node.engine import compiled_decode  # noqa: E402
from qwen_stack.qwen_node.engine.generate import SamplingParams, generate  # noqa: E402
from qwen_stack.qwen_node.engine.loader import FusedExpertsSource, load_model  # noqa: E402
from qwen_stack.qwen_node.engine.model import FusedExperts, Linear  # noqa: E402
from qwen_stack.qwen_node.engine.nvfp4 import NVFP4Linear  # noqa: E402
from qwen_stack.qwen_node.engine.nvfp4_checkpoint import quantize_checkpoint, read_quant_config  # noqa: E402
from qwen_stack.qwen_node.engine.nvfp4_loader import NVFP4Experts, load_model_auto  # noqa: E402


class StateDictSource:
    """TensorSource over an in-memory state dict (transformers keeps experts fused, as our virtual names)."""

    def __init__(self, sd):
        self.sd = sd

    def names(self):
        return self.sd.keys()

    def has(self, name):
        return name in self.sd

    def shape(self, name):
        return tuple(self.sd[name].shape)

    def get(self, name):
        return self.sd[name]


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class PeakRss:
    """Samples the process RSS every 2 ms; .peak_growth_mb = max RSS during the block - RSS before it."""

    def __enter__(self):
        self.before = self.peak = rss_mb()
        self.stop = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()
        return self

    def _run(self):
        while not self.stop.wait(0.002):
            self.peak = max(self.peak, rss_mb())

    def __exit__(self, *exc):
        self.stop.set()
        self.t.join()
        self.peak = max(self.peak, rss_mb())
        self.peak_growth_mb = self.peak - self.before


def build_reference(seed=0):
    import transformers as tf
    from tiny_checkpoints import randomise
    layer_types = ["linear_attention"] * 3 + ["full_attention"]
    text = dict(vocab_size=32768, hidden_size=1024, num_hidden_layers=8, layer_types=layer_types * 2,
                num_attention_heads=8, num_key_value_heads=2, head_dim=128, linear_num_key_heads=8,
                linear_num_value_heads=16, linear_key_head_dim=64, linear_value_head_dim=64,
                num_experts=64, num_experts_per_tok=8, moe_intermediate_size=256, shared_expert_intermediate_size=512,
                max_position_embeddings=65536,
                rope_parameters=dict(rope_type="default", rope_theta=1e7, partial_rotary_factor=0.25,
                                     mrope_section=[6, 5, 5], mrope_interleaved=True))
    model = tf.Qwen3_5MoeForCausalLM(tf.Qwen3_5MoeTextConfig(**text))
    randomise(model, seed)
    return model.eval()


class StepClock:
    """Token-arrival times: works as our on_token callback and as a transformers streamer (put/end)."""

    def __init__(self):
        self.t, self.cpu = [], []

    def __call__(self, token, text):
        if token is not None:
            self.t.append(time.perf_counter())
            self.cpu.append(time.thread_time())

    def put(self, value):
        self.t.append(time.perf_counter())

    def end(self):
        pass

    def step_ms(self):
        return [(b - a) * 1000 for a, b in zip(self.t, self.t[1:])]

    def step_cpu_ms(self):
        return [(b - a) * 1000 for a, b in zip(self.cpu, self.cpu[1:])]


def median(xs):
    return sorted(xs)[len(xs) // 2]


class NoRss:
    """Timed runs go without the RSS sampler: its thread waking every 2 ms would preempt one of the two compute
    threads and stall every parallel loop behind it. Memory is measured in a separate, untimed run."""
    peak_growth_mb = float("nan")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


def run_ours(model, prompt, new_tokens, memory=False):
    """-> (prefill seconds, median decode ms/token, peak RSS growth MB if memory else nan, and the first two in this
    thread's CPU time: prefill seconds, median decode ms/token)."""
    clock = StepClock()
    with PeakRss() if memory else NoRss() as mem:
        t0, c0 = time.perf_counter(), time.thread_time()
        res = generate(model, prompt, SamplingParams(max_new_tokens=new_tokens), on_token=clock)
    assert len(res.token_ids) == new_tokens
    return (clock.t[0] - t0, median(clock.step_ms()), mem.peak_growth_mb,
            clock.cpu[0] - c0, median(clock.step_cpu_ms()))


@torch.inference_mode()
def run_transformers(ref, prompt, new_tokens, memory=False):
    """Same measures for transformers generate (the streamer receives the prompt first, then each token)."""
    ids = torch.tensor([prompt])
    clock = StepClock()
    with PeakRss() if memory else NoRss() as mem:
        t0 = time.perf_counter()
        out = ref.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                           pad_token_id=0, streamer=clock)
    assert out.shape[1] == len(prompt) + new_tokens
    return clock.t[1] - t0, median(clock.step_ms()[1:]), mem.peak_growth_mb


def side_by_side(ours, ref, prompt, new_tokens, rounds):
    """Interleave ours compiled / ours eager / transformers runs (the machine may be shared); keep each side's
    best round. -> {"ours": (prefill tok/s, decode tok/s, peak MB), "eager": ..., "hf": ...}"""
    def run_eager(*a, **kw):
        step, ours.decode_step = ours.decode_step, None
        try:
            return run_ours(*a, **kw)
        finally:
            ours.decode_step = step
    sides = {"ours": lambda **kw: run_ours(ours, prompt, new_tokens, **kw),
             "eager": lambda **kw: run_eager(ours, prompt, new_tokens, **kw),
             "hf": lambda **kw: run_transformers(ref, prompt, new_tokens, **kw)}
    generate(ours, prompt[:8], SamplingParams(max_new_tokens=2))                  # warm-up all
    with torch.inference_mode():
        ref.generate(torch.tensor([prompt[:8]]), max_new_tokens=2, do_sample=False, pad_token_id=0)
    peak = {name: run(memory=True)[2] for name, run in sides.items()}            # first, untimed: memory
    runs = {name: [] for name in sides}
    for _ in range(rounds):
        for name, run in sides.items():
            runs[name].append(run())
    return {name: (len(prompt) / min(r[0] for r in rs), 1000 / min(r[1] for r in rs), peak[name])
            for name, rs in runs.items()}


@torch.inference_mode()
def decode_ms_at_context(model, ctx, steps):
    """Fill the caches as if ctx tokens had been processed, then time single-token decode steps."""
    g = torch.Generator().manual_seed(ctx)
    model.setup_caches(1, ctx + 3 * steps + 1)
    for layer in model.text.layers:
        mixer = layer.mixer
        if layer.layer_type == "full_attention":
            mixer.k_cache[:, :, :ctx] = torch.randn(mixer.k_cache[:, :, :ctx].shape, generator=g).to(mixer.k_cache.dtype)
            mixer.v_cache[:, :, :ctx] = torch.randn(mixer.v_cache[:, :, :ctx].shape, generator=g).to(mixer.v_cache.dtype)
        else:
            mixer.conv_state.copy_(torch.randn(mixer.conv_state.shape, generator=g))
            mixer.rec_state.copy_(0.1 * torch.randn(mixer.rec_state.shape, generator=g))
    tok = torch.tensor([[1]])
    model(tok, position_ids=torch.full((3, 1, 1), ctx), start=ctx, last_only=True)   # warm-up step
    rounds = []
    for r in range(3):                               # best of 3 rounds of `steps` steps (shared machine)
        times = []
        for i in range(steps):
            p = ctx + 1 + r * steps + i
            t0 = time.perf_counter()
            logits = model(tok, position_ids=torch.full((3, 1, 1), p), start=p, last_only=True)
            tok = logits[:, -1].argmax(-1, keepdim=True)
            times.append((time.perf_counter() - t0) * 1000)
        rounds.append(median(times))
    return min(rounds)


def active_weight_bytes(model) -> int:
    """Bytes of weights one decode step must read: every parameter and buffer (NVFP4 keeps its packed codes and
    scales as buffers), one embedding row, top-k of E experts."""
    cfg = model.config.text
    total = 0
    for name, p in [*model.named_parameters(), *model.named_buffers()]:
        if name.startswith("visual.") or name.endswith("input_scale"):       # input_scale: stored, never read
            continue
        n = p.numel() * p.element_size()
        if name.endswith("embed_tokens.weight"):
            n //= cfg.vocab_size
        elif ".experts." in name:
            n = n * cfg.num_experts_per_tok // cfg.num_experts
        total += n
    return total


def read_gbps() -> float:
    """This host's streaming read bandwidth now: best of 5 sums over 512 MB (2 threads), GB/s."""
    a = torch.ones(128 * 2**20)
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        a.sum()
        best = min(best, time.perf_counter() - t)
    return a.numel() * 4 / best / 1e9


def nvfp4_checkpoint(ref_bf16, work: Path, lm_head: bool = False) -> Path:
    """The bench model written as a bf16 checkpoint and quantized as `qwen-stack quantize [--lm-head nvfp4]` does
    (kept in work/ and reused by later runs with the same --work folder)."""
    src, dst = work / "bench_bf16", work / ("bench_nvfp4_head" if lm_head else "bench_nvfp4")
    if not (dst / "hf_quant_config.json").exists():
        if not (src / "config.json").exists():
            ref_bf16.save_pretrained(str(src))
        quantize_checkpoint(src, dst, measure_error=False, lm_head=lm_head)
    return dst


def run_eager(model, *a, **kw):
    step, model.decode_step = model.decode_step, None
    try:
        return run_ours(model, *a, **kw)
    finally:
        model.decode_step = step


def interleaved_rounds(models: dict, prompt, new_tokens, rounds) -> dict:
    """Every model compiled and eager in turn, `rounds` times (a busy host hurts all alike).
    -> {(name, "compiled" | "eager"): [(prefill s, decode ms/token, prefill CPU s, decode CPU ms/token), ...]}"""
    runs = {(name, mode): [] for name in models for mode in ("compiled", "eager")}
    for _ in range(rounds):
        for name, m in models.items():
            for mode, run in (("compiled", run_ours), ("eager", run_eager)):
                r = run(m, prompt, new_tokens)
                runs[(name, mode)].append((r[0], r[1], r[3], r[4]))
    return runs


def dequantized_twin(model, dtype):
    """The same model with every NVFP4 weight dequantized into plain bf16/fp32 layers (for --demo: the shipped
    NVFP4 weights in bf16 storage)."""
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, NVFP4Linear):
                plain = Linear(child.in_features, child.out_features, bias=child.bias is not None)
                plain.weight = torch.nn.Parameter(child.qweight.dequantize(dtype), requires_grad=False)
                if child.bias is not None:
                    plain.bias = torch.nn.Parameter(child.bias.detach().to(dtype), requires_grad=False)
            elif isinstance(child, NVFP4Experts):
                plain = FusedExperts(child.num_experts, child.gate_up_proj.in_features, child.intermediate)
                plain.gate_up_proj = torch.nn.Parameter(child.gate_up_proj.dequantize(dtype), requires_grad=False)
                plain.down_proj = torch.nn.Parameter(child.down_proj.dequantize(dtype), requires_grad=False)
            else:
                continue
            setattr(parent, child_name, plain)
    return model


def default_demo() -> Path | None:
    models = Path(__file__).resolve().parents[1] / "models"
    found = sorted(d for d in models.glob("*") if d.is_dir() and read_quant_config(d) is not None) if models.is_dir() else []
    return found[0] if found else None


def bf16_original(nvfp4_dir: Path) -> Path | None:
    """models/brain for models/brain-nvfp4: the unquantized folder the NVFP4 one was made from, if it is there."""
    if not nvfp4_dir.name.endswith("-nvfp4"):
        return None
    src = nvfp4_dir.with_name(nvfp4_dir.name[: -len("-nvfp4")])
    return src if (src / "config.json").exists() and read_quant_config(src) is None else None


def spread(xs, digits: int = 1) -> str:
    return f"{min(xs):.{digits}f}-{max(xs):.{digits}f}"


def quant_table(runs, names, warm, prompt_len, cpu: bool):
    """The fp32 / bf16 / NVFP4 rows (best and spread over the rounds) and the NVFP4/bf16 ratios, in wall-clock or
    CPU time. runs: interleaved_rounds' result."""
    p, d = (2, 3) if cpu else (0, 1)
    rate = {key: ([prompt_len / r[p] for r in rs], [1000 / r[d] for r in rs]) for key, rs in runs.items()}
    print(f"{'weights':<10} {'compile':>7} | {'prefill tok/s':>13} {'spread':>13} | {'decode tok/s':>12} "
          f"{'spread':>11} | {'eager tok/s':>11} {'spread':>11}")
    for name in names:
        (cp, cd), (_, ed) = rate[(name, "compiled")], rate[(name, "eager")]
        print(f"{name:<10} {warm[name]:>7.1f} | {max(cp):>13.1f} {spread(cp):>13} | {max(cd):>12.1f} {spread(cd):>11} | "
              f"{max(ed):>11.1f} {spread(ed):>11}")
    if "bf16" not in names:
        return
    (bp, bd), (_, be) = rate[("bf16", "compiled")], rate[("bf16", "eager")]
    for nv in [n for n in names if n.startswith("nvfp4")]:
        (np_, nd), (_, ne) = rate[(nv, "compiled")], rate[(nv, "eager")]
        print(f"{nv} / bf16 decode tokens/s: compiled {max(nd) / max(bd):.2f}x, eager {max(ne) / max(be):.2f}x "
              f"(target >= 2x); prefill time: {max(bp) / max(np_):.2f}x (target <= 1.5x); round by round (each run "
              f"against the bf16 run beside it): decode compiled {spread([n / b for n, b in zip(nd, bd)], 2)}x, "
              f"eager {spread([n / b for n, b in zip(ne, be)], 2)}x, prefill time "
              f"{spread([b / n for n, b in zip(np_, bp)], 2)}x")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="shorter prompt/decode, contexts up to 4K only")
    ap.add_argument("--quant", action="store_true", help="NVFP4 table only, short: --quick --no-hf, 3 rounds, 1 thread")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default 2; 1 with --quant)")
    ap.add_argument("--no-nvfp4", action="store_true", help="skip the NVFP4 rows")
    ap.add_argument("--no-hf", action="store_true", help="skip transformers and the context sweep (NVFP4 table only)")
    ap.add_argument("--rounds", type=int, default=0, help="interleaved rounds (default 2 quick, 5 full)")
    ap.add_argument("--work", type=Path, help="keep the quantized bench checkpoint here and reuse it")
    ap.add_argument("--demo", type=Path, default=None, help="a shipped NVFP4 model folder (default: models/*)")
    args = ap.parse_args(argv)
    if args.quant:
        if args.no_nvfp4:
            ap.error("--quant and --no-nvfp4 contradict each other")
        args.quick = args.no_hf = True
        args.rounds = args.rounds or 3
    rounds = args.rounds or (2 if args.quick else 5)
    torch.set_num_threads(args.threads or (1 if args.quant else 2))
    prompt_len, new_tokens = (128, 16) if args.quick else (256, 48)
    contexts = [1024, 4096] if args.quick else [1024, 4096, 16384, 32768]
    t0 = time.perf_counter()
    ref32 = build_reference()
    prompt = torch.randint(0, 32768, (prompt_len,), generator=torch.Generator().manual_seed(1)).tolist()
    rows, ctx_rows, floor_rows = [], [], []
    same_weights, warm = {}, {}                                                   # for the NVFP4 table
    with tempfile.TemporaryDirectory() as d:
        ref32.config.architectures = ["Qwen3_5MoeForCausalLM"]
        ref32.config.save_pretrained(d)                                           # config.json only
        for dtype_name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            ref = ref32 if dtype == torch.float32 else build_reference().to(torch.bfloat16)
            source = FusedExpertsSource(StateDictSource(ref.state_dict()))
            ours = load_model(d, dtype=dtype, source=source, progress=False)
            weights_mb = sum(p.numel() * p.element_size() for p in ours.parameters()) / 2**20
            compiled_decode.enable(ours)
            warm[dtype_name] = warm_s = compiled_decode.warm_up(ours)
            if not args.no_hf:
                r = side_by_side(ours, ref, prompt, new_tokens, rounds=rounds)
                rows.append((dtype_name, weights_mb, warm_s, r))
                floor_rows.append((dtype_name, active_weight_bytes(ours), read_gbps(), r))
                for ctx in contexts:
                    ctx_rows.append((dtype_name, ctx, decode_ms_at_context(ours, ctx, steps=6 if args.quick else 12)))
                ours.setup_caches(1, 1)
            if not args.no_nvfp4:
                same_weights[dtype_name] = ours
                if dtype == torch.bfloat16:
                    with tempfile.TemporaryDirectory() as q:
                        ref.config.architectures = ["Qwen3_5MoeForCausalLM"]
                        work = args.work or Path(q)
                        work.mkdir(parents=True, exist_ok=True)
                        for name, head in (("nvfp4", False), ("nvfp4+head", True)):
                            nv = load_model_auto(nvfp4_checkpoint(ref, work, head), dtype=torch.bfloat16,
                                                 progress=False)
                            compiled_decode.enable(nv)
                            warm[name] = compiled_decode.warm_up(nv)
                            same_weights[name] = nv
            del ours
            if ref is not ref32:
                del ref
    quant_runs = interleaved_rounds(same_weights, prompt, new_tokens, rounds) if same_weights else {}
    if quant_runs:
        gbps = read_gbps()
        for name in same_weights:
            best_ms = min(r[1] for r in quant_runs[(name, "compiled")])
            floor_rows.append((name, active_weight_bytes(same_weights[name]), gbps, {"ours": (None, 1000 / best_ms), "hf": None}))
    demo_rows = []
    demo = args.demo or default_demo()
    if demo is not None and not args.no_nvfp4:
        nv = load_model_auto(demo, dtype=torch.bfloat16, progress=False)
        original = bf16_original(demo)
        if original is not None:
            demo_models = {f"bf16 ({original.name})": load_model_auto(original, dtype=torch.bfloat16, progress=False)}
        else:
            demo_models = {"bf16 (dequantized)": dequantized_twin(load_model_auto(demo, dtype=torch.bfloat16,
                                                                                  progress=False), torch.bfloat16)}
        demo_models[f"nvfp4 ({demo.name})"] = nv
        for m in demo_models.values():
            compiled_decode.enable(m)
            compiled_decode.warm_up(m)
        vocab = nv.config.text.vocab_size
        demo_prompt = [t % vocab for t in prompt]
        demo_runs = interleaved_rounds(demo_models, demo_prompt, new_tokens, rounds)
        demo_rows = list(demo_models)
    print(f"\nQwen3.5-MoE bench config: hidden 1024, 8 layers (3 DeltaNet : 1 attention), 64 experts top-8, "
          f"vocab 32768; batch 1, greedy, {torch.get_num_threads()} threads; prompt {prompt_len}, {new_tokens} new tokens")
    print("ours = compiled decode step (qwen_node/engine/compiled_decode.py); eager = the same engine without it")
    if rows:
        print(f"{'dtype':<5} {'weights':>7} {'compile':>7} | {'prefill tok/s':>22} | {'decode tok/s':>38} | "
              f"{'peak RSS growth MB':>18}")
        print(f"{'':<5} {'MB':>7} {'s':>7} | {'ours':>7} {'hf':>7} {'ratio':>6} | {'ours':>7} {'eager':>7} {'hf':>7} "
              f"{'ours/hf':>7} {'eag/hf':>6} | {'ours':>8} {'hf':>9}")
    for name, wmb, warm_s, r in rows:
        (op, od, om), (_, ed, _), (hp, hd, hm) = r["ours"], r["eager"], r["hf"]
        print(f"{name:<5} {wmb:>7.0f} {warm_s:>7.1f} | {op:>7.1f} {hp:>7.1f} {op / hp:>5.2f}x | {od:>7.1f} {ed:>7.1f} "
              f"{hd:>7.1f} {od / hd:>6.2f}x {ed / hd:>5.2f}x | {om:>8.0f} {hm:>9.0f}")
    print("\nmemory floor: a batch-1 decode step reads every active weight once, so ms/token >= bytes / bandwidth "
          "(bandwidth measured right after that row's runs; it varies with the host's other load)")
    print(f"{'dtype':<10} {'read/token MB':>13} {'GB/s':>6} {'floor ms':>8} | {'ours ms':>7} {'of floor':>8} | "
          f"{'hf ms':>6} {'hf/floor':>8}")
    for name, nbytes, gbps, r in floor_rows:
        floor_ms = nbytes / gbps / 1e6
        ours_ms = 1000 / r["ours"][1]
        hf = "     -        -" if r["hf"] is None else f"{1000 / r['hf'][1]:>6.2f} {1000 / r['hf'][1] / floor_ms:>7.2f}x"
        print(f"{name:<10} {nbytes / 1e6:>13.0f} {gbps:>6.1f} {floor_ms:>8.2f} | {ours_ms:>7.2f} {floor_ms / ours_ms:>7.0%} | {hf}")
    if "nvfp4" in same_weights and "bf16" in same_weights:
        per_token = {name: nbytes for name, nbytes, _, _ in floor_rows}
        plain = sum(t.numel() * t.element_size() for n, t in same_weights["nvfp4"].named_parameters()
                    if n.startswith("lm_head."))
        print(f"nvfp4 reads {per_token['nvfp4'] / per_token['bf16']:.2f}x bf16's bytes per token (lm_head alone "
              f"{plain / 1e6:.0f} MB stays bf16, as do embeddings, router and norms): at equal bandwidth the floor "
              f"allows it at most {per_token['bf16'] / per_token['nvfp4']:.2f}x bf16's decode tokens/s")
        if "nvfp4+head" in per_token:
            print(f"nvfp4+head (lm_head packed too) reads {per_token['nvfp4+head'] / per_token['bf16']:.2f}x: at "
                  f"most {per_token['bf16'] / per_token['nvfp4+head']:.2f}x bf16's decode tokens/s")
    if ctx_rows:
        print("\nours (compiled): decode time per token vs context length (caches pre-filled)")
        print(f"{'dtype':<5} {'context':>8} {'ms/token':>9} {'vs 1K':>7}")
    base = {}
    for name, ctx, ms in ctx_rows:
        base.setdefault(name, ms)
        print(f"{name:<5} {ctx:>8} {ms:>9.2f} {ms / base[name]:>6.2f}x")
    if quant_runs:
        print(f"\nsame weights in fp32, bf16 and NVFP4 (ours; {rounds} interleaved rounds: best, and the spread over "
              f"the rounds; nvfp4 = the bf16 model quantized, lm_head/embeddings/router kept in bf16; nvfp4+head: lm_head "
              f"in NVFP4 too)")
        quant_table(quant_runs, same_weights, warm, len(prompt), cpu=False)
        if torch.get_num_threads() == 1:
            print("\nthe same runs in CPU time of the calling thread (one torch thread: all the work runs on it), which "
                  "waiting for a core held by the host's other work does not count")
            quant_table(quant_runs, same_weights, warm, len(prompt), cpu=True)
    if demo_rows:
        for cpu in (False, True) if torch.get_num_threads() == 1 else (False,):
            i = 3 if cpu else 1
            print(f"\nshipped demo model {demo}: decode tokens/s{' in CPU time' if cpu else ''} ({rounds} interleaved "
                  f"rounds: best, spread)")
            rates = {(name, mode): [1000 / r[i] for r in demo_runs[(name, mode)]] for name, mode in demo_runs}
            for name in demo_rows:
                comp, eag = rates[(name, "compiled")], rates[(name, "eager")]
                print(f"{name:<26} compiled {max(comp):>7.1f} ({spread(comp)})  eager {max(eag):>7.1f} ({spread(eag)})")
            b, n = demo_rows
            print(f"NVFP4 / bf16 decode tokens/s: compiled {max(rates[(n, 'compiled')]) / max(rates[(b, 'compiled')]):.2f}x "
                  f"(rounds {spread([x / y for x, y in zip(rates[(n, 'compiled')], rates[(b, 'compiled')])], 2)}x), "
                  f"eager {max(rates[(n, 'eager')]) / max(rates[(b, 'eager')]):.2f}x "
                  f"(rounds {spread([x / y for x, y in zip(rates[(n, 'eager')], rates[(b, 'eager')])], 2)}x)")
    elif not args.no_nvfp4:
        print("\nno shipped NVFP4 demo model found (models/*/hf_quant_config.json; --demo DIR): demo row skipped")
    print(f"\ntotal bench time {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
