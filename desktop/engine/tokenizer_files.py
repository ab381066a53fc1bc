"""Write a CLIP tokenizer (vocab.json + merges.txt) for a fixed list of words, offline.

Every listed word becomes exactly one token; any other text still tokenizes, letter by letter.
The merges are found by simulating CLIP's byte-pair encoding: for each word, keep merging the
first two pieces until the word is one piece. Later merges have lower priority, so adding a word
never changes how earlier words are split.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
_BASE_CHARS = string.ascii_lowercase + string.digits + string.punctuation


def _bpe(word: str, ranks: dict[tuple[str, str], int]) -> list[str]:
    parts = list(word[:-1]) + [word[-1] + "</w>"]
    while len(parts) > 1:
        pairs = [(ranks.get((a, b), 1 << 30), i) for i, (a, b) in enumerate(zip(parts, parts[1:]))]
        rank, i = min(pairs)
        if rank == 1 << 30:
            break
        pair = (parts[i], parts[i + 1])
        merged, j = [], 0
        while j < len(parts):
            if j + 1 < len(parts) and (parts[j], parts[j + 1]) == pair:
                merged.append(parts[j] + parts[j + 1])
                j += 2
            else:
                merged.append(parts[j])
                j += 1
        parts = merged
    return parts


def build_vocab(words: list[str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    vocab: dict[str, int] = {}
    for ch in _BASE_CHARS:
        vocab.setdefault(ch, len(vocab))
    for ch in _BASE_CHARS:
        vocab.setdefault(ch + "</w>", len(vocab))
    merges: list[tuple[str, str]] = []
    ranks: dict[tuple[str, str], int] = {}
    for word in dict.fromkeys(w.lower() for w in words):
        if not word or any(ch not in _BASE_CHARS for ch in word):
            raise ValueError(f"tokenizer words must be lowercase ASCII without spaces: {word!r}")
        parts = _bpe(word, ranks)
        while len(parts) > 1:
            pair = (parts[0], parts[1])
            ranks[pair] = len(merges)
            merges.append(pair)
            vocab.setdefault(pair[0] + pair[1], len(vocab))
            parts = _bpe(word, ranks)
    vocab[BOS] = len(vocab)
    vocab[EOS] = len(vocab)
    return vocab, merges


def write_clip_tokenizer(words: list[str], folder: Path, max_length: int = 77) -> Path:
    """Write a tokenizer folder that `CLIPTokenizer.from_pretrained(folder)` loads offline."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab, merges = build_vocab(words)
    (folder / "vocab.json").write_text(json.dumps(vocab, indent=0), encoding="utf-8")
    lines = ["#version: 0.2"] + [f"{a} {b}" for a, b in merges]
    (folder / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": max_length,
        "bos_token": BOS,
        "eos_token": EOS,
        "unk_token": EOS,
        "pad_token": EOS,
        "do_lower_case": True,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    special = {"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS}
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2), encoding="utf-8")
    return folder
