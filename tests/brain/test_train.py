"""`qwen-stack train-brain` end to end on a tiny preset: it trains, evaluates, saves a checkpoint the
engine loads, resumes where it stopped, and draws the loss curve."""
from __future__ import annotations

import json

import pytest
import torch

from qwen_stack.qwen_node.brain import train


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("brain_run")
    args = ["--out", str(out), "--size", "tiny", "--train-examples", "6", "--test-examples", "2", "--steps", "3",
            "--eval-every", "2", "--eval-examples", "1", "--save-every", "2", "--warmup", "1",
            "--batch", "2", "--first-turns", "2", "--variant-every", "2", "--short-cuts", "2", "--slip-rate", "0.3",
            "--miss-rate", "0.3"]
    assert train.main(args) == 0
    return out, args


def test_run_writes_log_checkpoint_and_plot(run):
    out, _ = run
    rows = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "step" in r] == [1, 2, 3]
    assert all(r["loss"] > 0 for r in rows if "loss" in r)
    assert "heldout_next_action_acc" in rows[1] and "final" in rows[-1]
    assert 0 <= rows[-1]["final"]["heldout_turn_decision_acc"] <= 1
    assert 0 <= rows[-1]["final"]["heldout_names_read_acc"] <= 1 and rows[-1]["final"]["heldout_names_read"] > 0
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    cfg = json.loads((out / "model" / "config.json").read_text())
    assert cfg["architectures"] == ["Qwen3_5MoeForCausalLM"] and (out / "model" / "vocab_map.json").is_file()
    assert "train-brain" in (out / "model" / "README.md").read_text()


def test_checkpoint_loads_in_transformers_with_the_same_logits(run):
    import transformers as tf

    from qwen_stack.qwen_node.engine.loader import load_model

    ref = tf.Qwen3_5MoeForCausalLM.from_pretrained(run[0] / "model", dtype=torch.float32).eval()
    ours = load_model(run[0] / "model", dtype=torch.float32, progress=False)
    ids = torch.randint(0, ref.config.vocab_size, (1, 200), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.allclose(ref(input_ids=ids).logits, ours(input_ids=ids), atol=1e-4)


def test_checkpoint_loads_in_the_engine(run):
    from qwen_stack.qwen_node.engine.engine import Engine

    engine = Engine.from_pretrained(run[0] / "model", dtype=torch.float32, progress=False)
    res = engine.generate([{"role": "user", "content": "Bring the red cube to the blue square."}], max_new_tokens=4)
    assert len(res.token_ids) >= 1


def test_resume_continues_from_the_saved_state(run, capsys):
    out, args = run
    args = [a if a != "3" else "5" for a in args]   # --steps 5
    assert train.main(args) == 0
    assert "resumed at step 3" in capsys.readouterr().out
    steps = [json.loads(x).get("step") for x in (out / "log.jsonl").read_text().splitlines()]
    assert [s for s in steps if s is not None][-2:] == [4, 5]


def test_bad_arguments_are_refused():
    with pytest.raises(SystemExit):
        train.main(["--out", "/tmp/x", "--steps", "0"])


def test_decision_tokens_weigh_more_in_the_loss():
    mask = [0, 1, 1, 1, 1]
    flags = [0, 0, 1, 2, 0]   # the prompt, filler, a decision token, a name read for the first time, filler
    assert train.token_weights(mask, flags, 4.0, 16.0) == [0.0, 1.0, 4.0, 16.0, 1.0]
    assert train.token_weights([0, 0], [1, 2], 4.0, 16.0) == [0.0, 0.0]   # not written: never a target


def test_shared_prefix_is_the_common_system_turn():
    S = 7   # the <|im_start|> row
    a = [S, 1, 2, 3, S, 9, 10, 11]
    b = [S, 1, 2, 3, S, 9, 12]
    variant = [S, 1, 5, S, 9, 10]
    assert train.shared_prefix([a, b, variant], S) == [S, 1, 2, 3, S, 9]
    assert train.first_turn_end([0, 0, 1, 1, 0, 1]) == 4
    assert train.turn_ends([0, 0, 1, 1, 0, 1]) == [4, 6]


def test_a_turn_decides_right_only_when_all_its_decision_tokens_are_right():
    mask = [0, 1, 1, 1, 0, 1, 1, 0, 1]
    flags = [0, 1, 0, 1, 0, 0, 0, 0, 2]   # turn 2 has no decision token: not counted
    right = [True] * 9
    assert train.turn_decisions(mask, flags, right) == (2, 2)
    right[3] = False                      # turn 1's second decision token wrong
    assert train.turn_decisions(mask, flags, right) == (2, 1)
    right[2] = right[5] = False           # filler and the undecided turn: no effect
    assert train.turn_decisions(mask, flags, right) == (2, 1)
    right[8] = False
    assert train.turn_decisions(mask, flags, right) == (2, 0)


def test_resume_keeps_the_vocabulary_of_the_saved_state(run):
    out, _ = run
    st = torch.load(out / "state.pt", weights_only=False)
    saved = json.loads((out / "model" / "vocab_map.json").read_text())["ids"]
    assert st["vocab"] == saved


def test_init_from_a_checkpoint_fine_tunes_it(run, tmp_path):
    """--init-from: the run starts from the checkpoint's weights and vocabulary rows (its first loss is the
    trained model's, far below a fresh start's), and a folder without a checkpoint is refused."""
    out, _ = run
    ft = tmp_path / "ft"
    args = ["--out", str(ft), "--init-from", str(out / "model"), "--train-examples", "6", "--test-examples", "2",
            "--steps", "1", "--eval-every", "5", "--eval-examples", "1", "--warmup", "1", "--batch", "2",
            "--first-turns", "2", "--miss-rate", "0.3"]
    assert train.main(args) == 0
    assert json.loads((ft / "model" / "vocab_map.json").read_text()) == \
        json.loads((out / "model" / "vocab_map.json").read_text())
    before = torch.load(out / "state.pt", weights_only=False)["model"]
    init = torch.load(ft / "state.pt", weights_only=False)["model"]
    name = next(k for k in before if k.endswith("embed_tokens.weight"))
    # one small step from the bf16 export of the trained weights: near them, not a fresh initialisation
    assert torch.allclose(init[name], before[name], atol=0.05)
    with pytest.raises(SystemExit):
        train.main(["--out", str(tmp_path / "bad"), "--init-from", str(tmp_path)])


def test_weighted_sample_draws_distinct_items_in_proportion():
    import itertools
    import random

    pool = list(range(10))
    cum = list(itertools.accumulate([1.0] * 9 + [20.0]))   # item 9 weighs 20 times the others
    rng = random.Random(0)
    draws = [train.weighted_sample(rng, pool, cum, 3) for _ in range(400)]
    assert all(len(set(d)) == 3 for d in draws)
    share = sum(9 in d for d in draws) / len(draws)
    assert share > 0.9                                       # unweighted: 3 in 10
    assert train.weighted_sample(rng, pool, cum, 50) and len(train.weighted_sample(rng, pool, cum, 50)) == 10


@pytest.mark.parametrize("value", ["0.5", "nan", "inf"])
def test_fault_weight_out_of_range_is_refused(value):
    with pytest.raises(SystemExit):
        train.main(["--out", "/tmp/x", "--fault-weight", value])


def test_fault_weight_and_aligned_cuts(run, tmp_path, monkeypatch):
    """The data records each mission's faults; --fault-weight refuses data generated without them; aligned cuts
    pad a batch of cuts less than independent ones on the same data and draws."""
    from qwen_stack.qwen_node.brain import shared_prefix as SP

    out, _ = run
    bundle = torch.load(out / "data.pt", weights_only=False)
    assert all(isinstance(m["faults"], list) for m in bundle["meta"]["train"])
    old = tmp_path / "old"
    old.mkdir()
    for m in bundle["meta"]["train"]:
        del m["faults"]
    torch.save(bundle, old / "data.pt")
    base = ["--train-examples", "6", "--test-examples", "2", "--steps", "4", "--eval-every", "10",
            "--eval-examples", "1", "--warmup", "1", "--batch", "2", "--first-turns", "0",
            "--short-first-turns", "0", "--variant-every", "0", "--short-cuts", "4", "--size", "tiny"]
    with pytest.raises(SystemExit):
        train.main(["--out", str(old), "--fault-weight", "2"] + base)

    padding = []
    real = SP.batch_loss

    def counting(model, prefix, suffixes, prefix_states=None):
        if not prefix:   # the cuts: the only batches without the shared prompt here
            longest = max(len(s) for s, _ in suffixes)
            padding[-1] += sum(longest - len(s) for s, _ in suffixes)
        return real(model, prefix, suffixes, prefix_states)

    monkeypatch.setattr(SP, "batch_loss", counting)
    for name, extra in (("free", []), ("aligned", ["--aligned-cuts"]), ("weighted", ["--aligned-cuts",
                                                                                   "--fault-weight", "3"])):
        (tmp_path / name).mkdir()
        (tmp_path / name / "data.pt").write_bytes((out / "data.pt").read_bytes())
        padding.append(0)
        assert train.main(["--out", str(tmp_path / name)] + base + extra) == 0
    assert padding[1] < padding[0]


def test_quote_errors_reaches_the_training_data():
    """train-brain --quote-errors is the expert's (tests/brain/test_dataset.py): the encoded training turns after a
    miss quote the planner's error; without it they are the earlier data's."""
    from qwen_stack.qwen_node.brain import dataset as D
    from qwen_stack.qwen_node.engine.tokenizer import QwenTokenizer

    tok, tools = QwenTokenizer(), D.planner_tools()
    texts = {}
    for quote in (False, True):
        b = train.build_data(12, 0, 0, tok, tools, D.default_system_prompt(), miss_rate=0.9, quote_errors=quote)
        texts[quote] = [tok.decode(ids) for ids, _ in b["data"]["train"]]
    quoted = "go_to_object failed: no object named '"
    assert not any(quoted in t for t in texts[False]) and sum(t.count(quoted) for t in texts[True]) >= 3


def test_release_slips_reach_the_training_split_only(capsys):
    """train-brain --release-slips is the expert's (tests/brain/test_dataset.py): the training split's turns read
    the failed release and go back; the held-out split stays as without the flag; the CLI takes the option."""
    from qwen_stack.qwen_node.brain import dataset as D
    from qwen_stack.qwen_node.engine.tokenizer import QwenTokenizer

    tok, tools = QwenTokenizer(), D.planner_tools()
    texts = {}
    for rate in (0.0, 1.0):
        b = train.build_data(12, 6, 0, tok, tools, D.default_system_prompt(), release_slip=rate)
        texts[rate] = {s: [tok.decode(ids) for ids, *_ in b["data"][s]] for s in ("train", "test")}
    read = "The release failed: not holding anything. I never grasped"
    assert not any(read in t for t in texts[0.0]["train"]) and sum(read in t for t in texts[1.0]["train"]) >= 3
    assert texts[1.0]["test"] == texts[0.0]["test"]
    with pytest.raises(SystemExit):   # the CLI has the option
        train.main(["--help"])
    assert "--release-slips RATE" in capsys.readouterr().out


def test_polite_reaches_the_training_split_only(capsys):
    """train-brain --polite (phrasing.polite): training instructions get the politeness word, the held-out
    split stays as without the flag."""
    from qwen_stack.qwen_node.brain import dataset as D
    from qwen_stack.qwen_node.engine.tokenizer import QwenTokenizer

    tok, tools = QwenTokenizer(), D.planner_tools()
    users = {}
    for rate in (0.0, 1.0):
        b = train.build_data(16, 6, 0, tok, tools, D.default_system_prompt(), polite_rate=rate)
        users[rate] = {s: [tok.decode(ids).split("<|im_start|>user\n")[1].split("<|im_end|>")[0]
                           for ids, *_ in b["data"][s]] for s in ("train", "test")}
    words = ("please", "bitte", "s'il te plaît", "por favor", "per favore")
    count = {r: sum(any(w in u.lower() for w in words) for u in users[r]["train"]) for r in users}
    assert count[1.0] >= count[0.0] + 8
    assert users[1.0]["test"] == users[0.0]["test"]
    with pytest.raises(SystemExit):
        train.main(["--help"])
    assert "--polite RATE" in capsys.readouterr().out


def test_denial_flags_reach_the_data(monkeypatch, capsys):
    """--varied-reasons reaches the training split only, --reason-first both splits (dataset.generate_example
    is tested for what they do)."""
    from qwen_stack.qwen_node.brain import dataset as D
    from qwen_stack.qwen_node.engine.tokenizer import QwenTokenizer

    seen = []
    real = D.generate_example

    def recording(seed, split, *args):
        seen.append((split, args[-2], args[-1]))
        return real(seed, split, *args)

    monkeypatch.setattr(D, "generate_example", recording)
    tok, tools = QwenTokenizer(), D.planner_tools()
    train.build_data(2, 2, 0, tok, tools, D.default_system_prompt(), varied_reasons=True, reason_first=True)
    assert seen == [("train", True, True)] * 2 + [("test", False, True)] * 2
    with pytest.raises(SystemExit):
        train.main(["--help"])
    out = capsys.readouterr().out
    assert "--varied-reasons" in out and "--reason-first" in out


def test_whole_answers_weighs_the_training_answers_only(run, tmp_path, monkeypatch):
    """--whole-answers reaches dataset.decision_flags for the training split; the held-out split keeps the
    answer's opening, so its figures mean the same with and without the flag."""
    from qwen_stack.qwen_node.brain import dataset as D

    out, _ = run
    calls = []
    real = D.decision_flags

    def recording(ids, mask, tokenizer, whole_answers=False):
        calls.append(whole_answers)
        return real(ids, mask, tokenizer, whole_answers=whole_answers)

    monkeypatch.setattr(D, "decision_flags", recording)
    for flag in ([], ["--whole-answers"]):
        calls.clear()
        (tmp_path / str(len(flag))).mkdir()
        (tmp_path / str(len(flag)) / "data.pt").write_bytes((out / "data.pt").read_bytes())
        assert train.main(["--out", str(tmp_path / str(len(flag))), "--size", "tiny", "--train-examples", "6",
                           "--test-examples", "2", "--steps", "1", "--eval-every", "5", "--eval-examples", "1",
                           "--warmup", "1", "--batch", "2", "--first-turns", "0", "--short-first-turns", "0",
                           "--variant-every", "0"] + flag) == 0
        assert calls == [bool(flag)] * 6 + [False] * 2
