"""PNG text chunks: the AUTOMATIC1111 `parameters` layout other tools read, and our exact request."""

from __future__ import annotations

import json

from desktop.engine.request import GenerationRequest

A1111_KEY = "parameters"
APP_KEY = "latent_studio"
APP_SCHEMA = 1


def _quote(value: str) -> str:
    """A1111 quotes values that would break its `key: value, ...` line."""
    return json.dumps(value, ensure_ascii=False) if any(ch in value for ch in ",:\n\"") else value


def a1111_parameters(req: GenerationRequest, seed: int, model_name: str) -> str:
    fields = [
        ("Steps", str(req.steps)),
        ("Sampler", req.scheduler or ""),
        ("CFG scale", f"{req.guidance:g}"),
        ("Seed", str(seed)),
        ("Size", f"{req.width}x{req.height}"),
        ("Model", model_name),
    ]
    lines = [req.prompt]
    if req.negative_prompt:
        lines.append(f"Negative prompt: {req.negative_prompt}")
    lines.append(", ".join(f"{key}: {_quote(value)}" for key, value in fields))
    return "\n".join(lines)


def app_record(req: GenerationRequest, seed: int, model: dict) -> str:
    record = {"schema": APP_SCHEMA, "request": req.replace(seed=seed, count=1).to_dict(), "model": model}
    return json.dumps(record, ensure_ascii=False, sort_keys=True)


def text_chunks(req: GenerationRequest, seed: int, model: dict) -> dict[str, str]:
    return {
        A1111_KEY: a1111_parameters(req, seed, model.get("name", "")),
        APP_KEY: app_record(req, seed, model),
    }
