"""Pruned vocabularies: a checkpoint whose embedding rows are a subset of the tokenizer's ids.

A small model trained on a narrow domain needs only the token ids its data uses; keeping all
248,320 rows of Qwen3.5's vocabulary would make the embedding and the LM head most of the model.
Such a checkpoint ships `vocab_map.json` beside config.json:

    {"format": "qwen-stack-vocab-map/1",
     "tokenizer": "qwen3.5",                  # the tokenizer whose ids are mapped
     "original_vocab_size": 248320,
     "ids": [id_0, id_1, ...]}               # model row i <-> tokenizer id ids[i]

The model's vocab_size equals len(ids) (config.json), and its config's image/video/vision-start
token ids are model rows. `MappedTokenizer` wraps the tokenizer so that every caller (the engine,
`qwen-stack generate`, `qwen-stack serve`) sees model ids and never needs to know: encode maps
tokenizer ids to rows, decode maps rows back. A token the map lacks is spelled with its bytes:
the map must hold the 256 single-byte tokens of the byte-level BPE (checked at load), so any text
can be encoded without loss, just in more tokens.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

FILENAME = "vocab_map.json"
FORMAT = "qwen-stack-vocab-map/1"


class VocabMapError(ValueError):
    """vocab_map.json is malformed or does not fit the checkpoint / tokenizer."""


def byte_token_ids(tokenizer) -> list[int]:
    """Tokenizer ids of the 256 single bytes (the byte-level BPE's base alphabet)."""
    enc = tokenizer._tok._tokenizer
    return [enc.encode_single_token(bytes([b])) for b in range(256)]


class VocabMap:
    def __init__(self, ids: Iterable[int], original_vocab_size: int):
        self.ids = [int(i) for i in ids]
        self.original_vocab_size = int(original_vocab_size)
        self.row_of = {tid: row for row, tid in enumerate(self.ids)}
        if len(self.row_of) != len(self.ids):
            raise VocabMapError(f"{FILENAME}: ids contain duplicates")
        bad = [i for i in self.ids if not 0 <= i < self.original_vocab_size]
        if bad:
            raise VocabMapError(f"{FILENAME}: ids outside 0..{self.original_vocab_size - 1}: {bad[:5]}")

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def build(cls, used_ids: Iterable[int], tokenizer) -> "VocabMap":
        """The rows a model trained on `used_ids` needs: the special tokens, the 256 byte tokens, the
        used ids; sorted by tokenizer id (so rows keep the tokenizer's order)."""
        ids = set(used_ids) | set(tokenizer.special_ids.values()) | set(byte_token_ids(tokenizer))
        return cls(sorted(ids), tokenizer.vocab_size)

    # ---- files -------------------------------------------------------------------------------
    def save(self, model_dir: str | Path) -> None:
        doc = {"format": FORMAT, "tokenizer": "qwen3.5", "original_vocab_size": self.original_vocab_size,
               "ids": self.ids}
        (Path(model_dir) / FILENAME).write_text(json.dumps(doc))

    @classmethod
    def load(cls, model_dir: str | Path) -> "VocabMap | None":
        """The folder's map, or None when it has none (a full-vocabulary checkpoint)."""
        path = Path(model_dir) / FILENAME
        if not path.is_file():
            return None
        try:
            doc = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise VocabMapError(f"{path}: not JSON ({exc})") from exc
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise VocabMapError(f"{path}: 'format' must be {FORMAT!r}")
        if not isinstance(doc.get("ids"), list) or not all(isinstance(i, int) for i in doc["ids"]):
            raise VocabMapError(f"{path}: 'ids' must be a list of integers")
        if not isinstance(doc.get("original_vocab_size"), int):
            raise VocabMapError(f"{path}: 'original_vocab_size' must be an integer")
        return cls(doc["ids"], doc["original_vocab_size"])

    # ---- mapping -----------------------------------------------------------------------------
    def to_rows(self, token_ids: Iterable[int], tokenizer) -> list[int]:
        """Tokenizer ids -> model rows; an unmapped token becomes its bytes' rows."""
        enc = tokenizer._tok._tokenizer
        out: list[int] = []
        for t in token_ids:
            row = self.row_of.get(t)
            if row is not None:
                out.append(row)
                continue
            for b in enc.decode_single_token_bytes(t):
                out.append(self.row_of[enc.encode_single_token(bytes([b]))])
        return out

    def to_token_ids(self, rows: Iterable[int]) -> list[int]:
        n = len(self.ids)
        out = []
        for r in rows:
            if not 0 <= r < n:
                raise VocabMapError(f"model row {r} is outside the map (0..{n - 1})")
            out.append(self.ids[r])
        return out


class MappedTokenizer:
    """A tokenizer speaking model rows (QwenTokenizer's interface) over a VocabMap."""

    def __init__(self, base, vmap: VocabMap):
        if vmap.original_vocab_size != base.vocab_size:
            raise VocabMapError(f"{FILENAME} maps a {vmap.original_vocab_size}-token vocabulary; the tokenizer has "
                                f"{base.vocab_size}")
        missing = [t for t in list(base.special_ids.values()) + byte_token_ids(base) if t not in vmap.row_of]
        if missing:
            raise VocabMapError(f"{FILENAME} lacks {len(missing)} special or single-byte token ids (e.g. {missing[:3]}); "
                                f"they are needed to encode any text")
        self.base, self.map = base, vmap
        self.special_ids = {t: vmap.row_of[i] for t, i in base.special_ids.items()}
        self.im_end_id = self.special_ids["<|im_end|>"]
        self.endoftext_id = self.special_ids["<|endoftext|>"]

    @property
    def vocab_size(self) -> int:
        return len(self.map)

    def encode(self, text: str, allow_special: bool = True) -> list[int]:
        return self.map.to_rows(self.base.encode(text, allow_special), self.base)

    def decode(self, ids: list[int], skip_special: bool = False) -> str:
        if skip_special:
            specials = set(self.special_ids.values())
            ids = [i for i in ids if i not in specials]
        return self.base.decode(self.map.to_token_ids(ids))

    def token_id(self, special: str) -> int:
        if special not in self.special_ids:
            raise KeyError(f"{special!r} is not a Qwen3.5 special token")
        return self.special_ids[special]


def tokenizer_for(model_dir: str | Path, base=None):
    """The tokenizer a checkpoint folder needs: MappedTokenizer when it ships vocab_map.json, else None
    (the caller's default, the full Qwen3.5 tokenizer)."""
    vmap = VocabMap.load(model_dir)
    if vmap is None:
        return None
    if base is None:
        from .tokenizer import QwenTokenizer
        base = QwenTokenizer()
    return MappedTokenizer(base, vmap)
