"""Textual-inversion embeddings, used as in AUTOMATIC1111: write the file's name in the prompt.

Files live in `<data dir>/embeddings/` and the folders in Settings (`embedding_folders`). SD 1.x/2.x
files hold one tensor (`emb_params`, or `string_to_param.*` as A1111 saves them); SDXL files hold
`clip_l` and `clip_g`, one per text encoder. An embedding is loaded into the model's tokenizer and
text encoder the first time a prompt names it and stays while the model does; a file that changes is
read again (same number of vectors) on the next job. Only `.safetensors`:
a pickled `.pt` is refused with the command that converts it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from desktop import paths
from desktop.errors import LatentStudioError

SUFFIX = ".safetensors"
WIDTHS = {768: "SD 1.x", 1024: "SD 2.x", 1280: "SDXL (second encoder)"}


class EmbeddingError(LatentStudioError):
    """An embedding that cannot be used; the message names the file and why."""


@dataclass(frozen=True)
class Embedding:
    name: str  # the file stem: the word that uses it
    path: Path
    vectors: dict  # text encoder slot ("l" first encoder, "g" SDXL's second) -> tensor (n, width)
    short_hash: str  # A1111's: sha256 of the whole file, first 12 hex digits
    stamp: tuple = ()  # the file's (size, mtime) when read: a changed file is read again


def embedding_folders(extra: list[str] | tuple[str, ...] = ()) -> list[Path]:
    return [paths.data_dir() / "embeddings", *(Path(f).expanduser() for f in extra)]


def find_files(folders: list[Path]) -> dict[str, Path]:
    """Every embedding file by name (pickles too, to name them as unsafe)."""
    from desktop.engine.loras import files_by_stem

    return files_by_stem(folders, (SUFFIX, ".pt", ".bin"))


def base_of(path: Path) -> tuple[str, int] | None:
    """(base, the cross-attention width of the models it fits) from the header alone; None for a
    pickle or a file that is not an embedding."""
    from desktop.engine.loras import BASES, LoraError, read_header

    try:
        header = read_header(path)[0]
    except LoraError:
        return None
    if "clip_l" in header and "clip_g" in header:
        return "SDXL", 2048
    for key in ("emb_params", *(k for k in header if k.startswith("string_to_param"))):
        shape = header.get(key, {}).get("shape") if isinstance(header.get(key), dict) else None
        if shape:
            return BASES.get(int(shape[-1]), f"width {shape[-1]}"), int(shape[-1])
    return None


def named_in(texts: list[str], folders: list[Path]) -> list[Path]:
    """The embedding files whose names the texts use as words (A1111 matches names, not tags)."""
    files = find_files(folders)
    joined = "\n".join(texts)
    return [path for name, path in files.items() if re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", joined)]


def read(path: Path) -> Embedding:
    if path.suffix.lower() != SUFFIX:
        raise EmbeddingError(f"The embedding {path.name} is a pickle ({path.suffix}), which can run code when loaded; "
                             f"convert it once with `python main.py models convert \"{path}\"`.")
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise EmbeddingError(f"The embedding {path.name} is not a readable .safetensors file ({exc}).") from exc
    if "clip_l" in tensors and "clip_g" in tensors:
        vectors = {"l": tensors["clip_l"], "g": tensors["clip_g"]}
    else:
        found = [t for k, t in tensors.items() if k == "emb_params" or k.startswith("string_to_param")]
        if len(found) != 1:
            raise EmbeddingError(f"{path.name} is not a textual-inversion embedding (no emb_params, string_to_param "
                                 "or clip_l/clip_g tensor).")
        vectors = {"l": found[0]}
    vectors = {slot: v.reshape(-1, v.shape[-1]) for slot, v in vectors.items()}
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    return Embedding(path.stem, path, vectors, digest, file_stamp(path))


def file_stamp(path: Path) -> tuple:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


def load_into(pipe, embedding: Embedding) -> None:
    """Add the embedding's vectors to the pipeline's tokenizers and text encoders (SDXL: both)."""
    targets = [("l", pipe.tokenizer, pipe.text_encoder)]
    if getattr(pipe, "text_encoder_2", None) is not None:
        targets.append(("g", pipe.tokenizer_2, pipe.text_encoder_2))
    for slot, tokenizer, encoder in targets:
        vectors = embedding.vectors.get(slot)
        width = encoder.get_input_embeddings().weight.shape[1]
        if vectors is None or vectors.shape[1] != width:
            have = ", ".join(f"{v.shape[1]} wide" for v in embedding.vectors.values())
            made_for = WIDTHS.get(next(iter(embedding.vectors.values())).shape[1], "another model")
            raise EmbeddingError(f"The embedding {embedding.name} is for {made_for} ({have}); this model's text "
                                 f"encoder is {width} wide.")
    for slot, tokenizer, encoder in targets:
        try:
            pipe.load_textual_inversion(embedding.vectors[slot].to(encoder.dtype), token=embedding.name,
                                        tokenizer=tokenizer, text_encoder=encoder)
        except ValueError as exc:  # e.g. the name is already a word of the tokenizer's vocabulary
            raise EmbeddingError(f"The embedding {embedding.name} cannot be added: {exc}") from exc


def replace_in(pipe, old: Embedding, new: Embedding) -> None:
    """A loaded embedding whose file changed: its tokens get the new vectors (the same count), in place."""
    import torch

    if {k: v.shape for k, v in old.vectors.items()} != {k: v.shape for k, v in new.vectors.items()}:
        raise EmbeddingError(f"The embedding {new.name} changed its number or width of vectors since it was loaded; "
                             "switch to another model and back to load the new file.")
    targets = [("l", pipe.tokenizer, pipe.text_encoder)]
    if getattr(pipe, "text_encoder_2", None) is not None:
        targets.append(("g", pipe.tokenizer_2, pipe.text_encoder_2))
    for slot, tokenizer, encoder in targets:
        vectors = new.vectors[slot]
        tokens = [new.name] + [f"{new.name}_{i}" for i in range(1, vectors.shape[0])]
        table = encoder.get_input_embeddings().weight
        with torch.no_grad():
            for token, vector in zip(tokens, vectors):
                table[tokenizer.convert_tokens_to_ids(token)] = vector.to(table.device, table.dtype)


def expand(tokenizer, text: str) -> str:
    """A multi-vector embedding is several tokens (`name`, `name_1`, …): its name stands for all of them."""
    added = tokenizer.get_added_vocab()
    for token in sorted(added, key=len, reverse=True):
        if f"{token}_1" in added and not re.search(r"_\d+$", token):
            count = 1
            while f"{token}_{count}" in added:
                count += 1
            replacement = " ".join([token] + [f"{token}_{i}" for i in range(1, count)])
            text = re.sub(rf"(?<![\w-]){re.escape(token)}(?![\w-])", replacement, text)
    return text
