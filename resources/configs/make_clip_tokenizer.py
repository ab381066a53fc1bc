"""Derive the CLIP tokenizer files (vocab.json, merges.txt) from OpenAI's BPE merge list.

The list is MIT-licensed and ships inside PyPI packages, e.g. `open_clip/bpe_simple_vocab_16e6.txt.gz`
in open_clip_torch. Usage:

    python resources/configs/make_clip_tokenizer.py path/to/bpe_simple_vocab_16e6.txt.gz

The result is the tokenizer of Stable Diffusion 1.x/2.x and SDXL (49,408 tokens): the 256 byte
symbols, the same with an end-of-word mark, one token per merge, then the two special tokens.
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

MERGES = 49152 - 256 - 2  # as in CLIP's simple_tokenizer.py


def bytes_to_unicode() -> dict[int, str]:
    """CLIP's reversible byte -> printable character map."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars)))


def build(bpe_gz: Path, out: Path) -> None:
    lines = gzip.open(bpe_gz).read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : MERGES + 1]]
    symbols = list(bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.json").write_text(json.dumps({token: i for i, token in enumerate(vocab)}, ensure_ascii=False))
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n", encoding="utf-8")


if __name__ == "__main__":
    build(Path(sys.argv[1]), Path(__file__).parent / "clip-tokenizer")
