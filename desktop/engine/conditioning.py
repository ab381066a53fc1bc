"""Text conditioning the way AUTOMATIC1111 builds it, for Stable Diffusion 1.x/2.x pipelines.

A prompt is split into chunks of the text encoder's window (75 tokens for CLIP, fewer for the
shipped model), backing off to the last comma within 20 tokens of a cut, and BREAK starts a new
chunk. Each chunk is encoded on its own (BOS + tokens + EOS padding) and the results are joined, so
no word is dropped. Attention weights scale each token's output, then the mean is restored.
Prompt editing gives one conditioning per span of steps; the engine swaps them between steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from desktop.engine.prompt_syntax import BREAK, parse_attention, prompt_schedule, strip_extra_networks

COMMA_BACKTRACK = 20  # A1111's default comma_padding_backtrack


@dataclass
class Chunk:
    tokens: list[int] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)


def supports(pipe) -> bool:
    """SD 1.x/2.x pipelines (one CLIP text encoder); SDXL keeps diffusers' own encoding for now."""
    return getattr(pipe, "text_encoder", None) is not None and getattr(pipe, "text_encoder_2", None) is None


def chunks(tokenizer, text: str) -> list[Chunk]:
    """A1111's tokenize_line: weighted tokens in window-sized chunks, each with BOS/EOS and padding."""
    length = tokenizer.model_max_length - 2
    start, end = tokenizer.bos_token_id, tokenizer.eos_token_id
    comma = tokenizer.get_vocab().get(",</w>")
    pieces = parse_attention(strip_extra_networks(text)[0])
    tokenized = tokenizer([p for p, _ in pieces], truncation=False, add_special_tokens=False).input_ids
    done: list[Chunk] = []
    chunk, last_comma = Chunk(), -1

    def close() -> None:
        nonlocal chunk, last_comma
        pad = length - len(chunk.tokens)
        chunk.tokens = [start] + chunk.tokens + [end] * pad + [end]
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


def encode(pipe, text: str):
    """(1, chunks × window, width) embeddings of a plain prompt (no editing left in it)."""
    import torch

    encoder = pipe.text_encoder
    outputs = []
    with torch.inference_mode():
        for chunk in chunks(pipe.tokenizer, text):
            ids = torch.tensor([chunk.tokens], device=encoder.device)
            z = encoder(ids)[0]
            weights = torch.tensor(chunk.weights, device=z.device, dtype=z.dtype).reshape(1, -1, 1)
            if bool((weights != 1).any()):  # A1111: scale each token, then bring the mean back
                mean, spread = z.mean(), z.std()
                z = z * weights
                ratio = mean / z.mean()
                # Outputs that average to ~0 (the shipped model's, untrained ones) have no mean to
                # restore: dividing by a near-zero mean would scale or flip everything.
                if abs(float(mean)) > 0.01 * float(spread) and torch.isfinite(ratio) and 0.5 < float(ratio) < 2:
                    z = z * ratio
            outputs.append(z)
    return torch.cat(outputs, dim=1)


@dataclass
class Conditioning:
    """Embeddings per span of steps for the prompt and the negative prompt (1-based last steps)."""

    positive: list[tuple[int, object]]
    negative: list[tuple[int, object]]

    def at(self, step: int, guided: bool):
        """What the UNet gets at a 1-based step: [negative, positive] when guidance is on."""
        import torch

        positive = next(e for last, e in self.positive if step <= last)
        if not guided:
            return positive
        return torch.cat([next(e for last, e in self.negative if step <= last), positive])

    def changes_after(self, step: int) -> bool:
        return any(last == step for last, _ in self.positive[:-1] + self.negative[:-1])


def build(pipe, prompt: str, negative: str, steps: int) -> Conditioning:
    """Every distinct prompt of the schedule encoded once; all padded to one length, as the UNet
    batches the negative and positive together (A1111 pads with the empty prompt's chunk)."""
    cache: dict[str, object] = {}

    def schedule(text: str) -> list[tuple[int, object]]:
        entries = []
        for last, plain in prompt_schedule(text, steps):
            if plain not in cache:
                cache[plain] = encode(pipe, plain)
            entries.append((last, cache[plain]))
        return entries

    positive, negative_entries = schedule(prompt), schedule(negative)
    longest = max(e.shape[1] for _, e in positive + negative_entries)
    empty = encode(pipe, "")
    window = empty.shape[1]

    def pad(embeds):
        import torch

        missing = (longest - embeds.shape[1]) // window
        return torch.cat([embeds, empty.repeat(1, missing, 1)], dim=1) if missing else embeds

    return Conditioning([(last, pad(e)) for last, e in positive], [(last, pad(e)) for last, e in negative_entries])
