"""Text conditioning the way AUTOMATIC1111 builds it, for Stable Diffusion 1.x/2.x and SDXL pipelines.

A prompt is split into chunks of the text encoder's window (75 tokens for CLIP, fewer for the
shipped model), backing off to the last comma within 20 tokens of a cut, and BREAK starts a new
chunk. Each chunk is encoded on its own (BOS + tokens + EOS padding) and the results are joined, so
no word is dropped. Attention weights scale each token's output, then the mean is restored.
Prompt editing gives one conditioning per span of steps; the engine swaps them between steps.
SDXL joins the penultimate layers of its two encoders and takes the pooled embedding from the
second encoder's first chunk, as A1111 does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from desktop.engine.embeddings import expand
from desktop.engine.prompt_syntax import BREAK, parse_attention, prompt_schedule, strip_extra_networks

COMMA_BACKTRACK = 20  # A1111's default comma_padding_backtrack


@dataclass
class Chunk:
    tokens: list[int] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)


def supports(pipe) -> bool:
    """Pipelines whose text encoders this module drives: SD 1.x/2.x (one CLIP) and SDXL (two)."""
    return getattr(pipe, "text_encoder", None) is not None and getattr(pipe, "tokenizer", None) is not None


def _encoders(pipe) -> list[tuple[object, object, bool]]:
    """(tokenizer, text encoder, use the penultimate layer) per encoder, as A1111 reads them."""
    if getattr(pipe, "text_encoder_2", None) is None:
        return [(pipe.tokenizer, pipe.text_encoder, False)]
    return [(pipe.tokenizer, pipe.text_encoder, True), (pipe.tokenizer_2, pipe.text_encoder_2, True)]


def chunks(tokenizer, text: str) -> list[Chunk]:
    """A1111's tokenize_line: weighted tokens in window-sized chunks, each with BOS/EOS and padding."""
    length = tokenizer.model_max_length - 2
    start, end = tokenizer.bos_token_id, tokenizer.eos_token_id
    padding = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else end
    comma = tokenizer.get_vocab().get(",</w>")
    pieces = parse_attention(strip_extra_networks(text)[0])
    tokenized = tokenizer([expand(tokenizer, p) for p, _ in pieces], truncation=False, add_special_tokens=False).input_ids
    done: list[Chunk] = []
    chunk, last_comma = Chunk(), -1

    def close() -> None:
        nonlocal chunk, last_comma
        pad = length - len(chunk.tokens)  # after the first EOS the tokenizer's pad token, as A1111 and diffusers
        chunk.tokens = [start] + chunk.tokens + [end] + [padding] * pad
        chunk.weights = [1.0] + chunk.weights + [1.0] * pad + [1.0]
        done.append(chunk)
        chunk, last_comma = Chunk(), -1

    for ids, (piece, weight) in zip(tokenized, pieces):
        if piece == BREAK and weight == -1:
            close()
            continue
        for token in ids:
            if token == comma:
                last_comma = len(chunk.tokens)
            elif len(chunk.tokens) == length and last_comma != -1 and len(chunk.tokens) - last_comma <= COMMA_BACKTRACK:
                cut = last_comma + 1  # the words after the last comma move to the next chunk
                moved = Chunk(chunk.tokens[cut:], chunk.weights[cut:])
                chunk.tokens, chunk.weights = chunk.tokens[:cut], chunk.weights[:cut]
                close()
                chunk = moved
            if len(chunk.tokens) == length:
                close()
            chunk.tokens.append(token)
            chunk.weights.append(weight)
    if chunk.tokens or not done:
        close()
    return done


@dataclass
class Embeds:
    hidden: object  # (1, chunks × window, width): what the UNet attends to
    pooled: object | None = None  # (1, width) of SDXL's second encoder, from the first chunk


def encode(pipe, text: str) -> Embeds:
    """The embeddings of a plain prompt (no editing left in it); SDXL joins its two encoders."""
    import torch

    hidden, pooled = [], None
    with torch.inference_mode():
        for tokenizer, encoder, penultimate in _encoders(pipe):
            parts = []
            for index, chunk in enumerate(chunks(tokenizer, text)):
                ids = torch.tensor([chunk.tokens], device=encoder.device)
                out = encoder(ids, output_hidden_states=penultimate)
                z = out.hidden_states[-2] if penultimate else out[0]
                if index == 0 and hasattr(out, "text_embeds"):
                    pooled = out.text_embeds
                parts.append(_weighted(z, chunk.weights))
            hidden.append(torch.cat(parts, dim=1))
    return Embeds(torch.cat(hidden, dim=-1), pooled)


def _weighted(z, weights: list[float]):
    """A1111: scale each token's output by its weight, then bring the mean back."""
    import torch

    if all(w == 1 for w in weights):
        return z
    mean, spread = z.mean(), z.std()
    z = z * torch.tensor(weights, device=z.device, dtype=z.dtype).reshape(1, -1, 1)
    ratio = mean / z.mean()
    # Outputs that average to ~0 (the shipped model's, untrained ones) have no mean to restore:
    # dividing by a near-zero mean would scale or flip everything.
    if abs(float(mean)) > 0.01 * float(spread) and torch.isfinite(ratio) and 0.5 < float(ratio) < 2:
        z = z * ratio
    return z


@dataclass
class Conditioning:
    """Embeddings per span of steps for the prompt and the negative prompt (1-based last steps)."""

    positive: list[tuple[int, Embeds]]
    negative: list[tuple[int, Embeds]]

    def first(self) -> dict:
        """The pipeline's text arguments for step 1."""
        positive, negative = self.positive[0][1], self.negative[0][1]
        args = {"prompt_embeds": positive.hidden, "negative_prompt_embeds": negative.hidden}
        if positive.pooled is not None:
            args.update(pooled_prompt_embeds=positive.pooled, negative_pooled_prompt_embeds=negative.pooled)
        return args

    def at(self, step: int, guided: bool) -> dict:
        """The callback tensors for a 1-based step: [negative, positive] batched when guidance is on."""
        import torch

        positive = next(e for last, e in self.positive if step <= last)
        negative = next(e for last, e in self.negative if step <= last)
        pair = (lambda n, p: torch.cat([n, p])) if guided else (lambda n, p: p)
        tensors = {"prompt_embeds": pair(negative.hidden, positive.hidden)}
        if positive.pooled is not None:
            tensors["add_text_embeds"] = pair(negative.pooled, positive.pooled)
        return tensors

    def changes_after(self, step: int) -> bool:
        return any(last == step for last, _ in self.positive[:-1] + self.negative[:-1])

    @property
    def scheduled(self) -> bool:
        return len(self.positive) + len(self.negative) > 2


def build(pipe, prompt: str, negative: str, steps: int, guided: bool = True) -> Conditioning:
    """Every distinct prompt of the schedule encoded once; all padded to one length, as the UNet
    batches the negative and positive together (A1111 pads with the empty prompt's chunk). Without
    guidance (CFG ≤ 1: one UNet pass per step) the negative prompt is never used, so never encoded."""
    cache: dict[str, object] = {}

    def schedule(text: str) -> list[tuple[int, object]]:
        entries = []
        for last, plain in prompt_schedule(text, steps):
            if plain not in cache:
                cache[plain] = encode(pipe, plain)
            entries.append((last, cache[plain]))
        return entries

    positive = schedule(prompt)
    negative_entries = schedule(negative) if guided else positive
    longest = max(e.hidden.shape[1] for _, e in positive + negative_entries)

    def pad(embeds: Embeds) -> Embeds:
        import torch

        if embeds.hidden.shape[1] == longest:
            return embeds
        if "" not in cache:  # the empty prompt's chunk, encoded once (often already the negative)
            cache[""] = encode(pipe, "")
        empty = cache[""].hidden
        missing = (longest - embeds.hidden.shape[1]) // empty.shape[1]
        return Embeds(torch.cat([embeds.hidden, empty.repeat(1, missing, 1)], dim=1), embeds.pooled)

    return Conditioning([(last, pad(e)) for last, e in positive], [(last, pad(e)) for last, e in negative_entries])
