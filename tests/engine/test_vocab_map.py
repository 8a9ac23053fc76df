"""Pruned vocabularies (engine/vocab_map.py): the map, the mapped tokenizer, and a pruned checkpoint
loaded by Engine.from_pretrained (the engine speaks model rows, text in and text out is unchanged)."""
from __future__ import annotations

import json

import pytest
import torch

from qwen_stack.qwen_node.engine.tokenizer import QwenTokenizer
from qwen_stack.qwen_node.engine.vocab_map import (FILENAME, MappedTokenizer, VocabMap, VocabMapError,
                                                   byte_token_ids, tokenizer_for)

DOMAIN = "Bring the red cube to the blue square. <tool_call>\n<function=grasp>\n</function>\n</tool_call>"


@pytest.fixture(scope="module")
def tok():
    return QwenTokenizer()


@pytest.fixture(scope="module")
def vmap(tok):
    return VocabMap.build(tok.encode(DOMAIN), tok)


def test_map_holds_specials_bytes_and_the_used_ids(tok, vmap):
    assert set(tok.encode(DOMAIN)) <= set(vmap.ids)
    assert set(tok.special_ids.values()) <= set(vmap.ids) and set(byte_token_ids(tok)) <= set(vmap.ids)
    assert vmap.ids == sorted(vmap.ids) and len(vmap) < 400


@pytest.mark.parametrize("text", [DOMAIN, "Llévalo al cuadrado azul, s'il te plaît: 3,5 m! 机器人 🤖",
                                  "<|im_start|>user\nunseen words: quixotic zephyr<|im_end|>"])
def test_mapped_tokenizer_round_trips_any_text(tok, vmap, text):
    mt = MappedTokenizer(tok, vmap)
    rows = mt.encode(text)
    assert all(0 <= r < len(vmap) for r in rows)
    assert mt.decode(rows) == text
    if text == DOMAIN:   # mapped tokens stay one row each
        assert len(rows) == len(tok.encode(text))
    else:                # unmapped tokens are spelled with their bytes
        assert len(rows) > len(tok.encode(text))


def test_special_ids_are_rows(tok, vmap):
    mt = MappedTokenizer(tok, vmap)
    assert mt.decode([mt.im_end_id]) == "<|im_end|>"
    assert mt.token_id("<|image_pad|>") == vmap.row_of[tok.token_id("<|image_pad|>")]
    with pytest.raises(KeyError):
        mt.token_id("<nope>")


def test_save_load_and_bad_files(tmp_path, tok, vmap):
    assert tokenizer_for(tmp_path) is None          # no map: the caller's full tokenizer
    vmap.save(tmp_path)
    assert VocabMap.load(tmp_path).ids == vmap.ids
    assert isinstance(tokenizer_for(tmp_path, tok), MappedTokenizer)
    path = tmp_path / FILENAME
    doc = json.loads(path.read_text())
    for bad, msg in ((dict(doc, format="x"), "format"), (dict(doc, ids="1,2"), "ids"),
                     (dict(doc, ids=doc["ids"] + [doc["ids"][0]]), "duplicates"),
                     (dict(doc, ids=doc["ids"] + [10 ** 7]), "outside")):
        path.write_text(json.dumps(bad))
        with pytest.raises(VocabMapError, match=msg):
            VocabMap.load(tmp_path)
    path.write_text("{not json")
    with pytest.raises(VocabMapError, match="not JSON"):
        VocabMap.load(tmp_path)
    no_bytes = VocabMap(sorted(set(tok.encode(DOMAIN)) | set(tok.special_ids.values())), tok.vocab_size)
    with pytest.raises(VocabMapError, match="single-byte"):
        MappedTokenizer(tok, no_bytes)
    with pytest.raises(VocabMapError, match="outside the map"):
        MappedTokenizer(tok, vmap).decode([len(vmap)])


@pytest.fixture(scope="module")
def pruned_checkpoint(tmp_path_factory, tok, vmap):
    import transformers as tf

    from qwen_stack.qwen_node.brain.model_config import brain_config
    from qwen_stack.qwen_node.brain.train import special_ids_as_rows
    from tiny_checkpoints import randomise

    torch.manual_seed(0)
    model = tf.Qwen3_5MoeForCausalLM(brain_config(len(vmap), "tiny"))
    randomise(model, 3)
    folder = tmp_path_factory.mktemp("pruned")
    model.save_pretrained(str(folder))   # fp32, as transformers writes a pruned-vocabulary model
    vmap.save(folder)
    special_ids_as_rows(folder / "config.json", MappedTokenizer(tok, vmap))
    return folder, model.eval()


def test_engine_loads_a_pruned_checkpoint_and_matches_transformers(pruned_checkpoint):
    from qwen_stack.qwen_node.engine.engine import Engine

    folder, ref = pruned_checkpoint
    engine = Engine.from_pretrained(folder, dtype=torch.float32, progress=False)
    assert isinstance(engine.tokenizer, MappedTokenizer)
    prompt = engine.build_prompt([{"role": "user", "content": "Bring the red cube to the blue square."}])
    ids = torch.tensor([prompt.token_ids])
    assert int(ids.max()) < engine.model.config.text.vocab_size
    with torch.no_grad():
        want = ref(input_ids=ids).logits
        got = engine.model(ids)
    assert ((got - want).abs().max() / want.abs().max()).item() <= 1e-4
    res = engine.generate([{"role": "user", "content": "Hola"}], max_new_tokens=8)
    assert len(res.token_ids) >= 1 and all(0 <= t < engine.model.config.text.vocab_size for t in res.token_ids)
    assert res.text == engine.tokenizer.decode([t for t in res.token_ids if t not in engine.stop_token_ids])
