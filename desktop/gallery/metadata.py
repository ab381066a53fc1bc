"""PNG text chunks: writing ours (the AUTOMATIC1111 `parameters` layout other tools read, plus our
exact request as JSON) and reading what this app and others wrote into the settings of a request.

Reading never raises on bad metadata: a malformed chunk is skipped and what was readable is kept.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from desktop.engine.request import IMAGE_FIELDS, GenerationRequest

if TYPE_CHECKING:
    from desktop.gallery.pngchunks import PNGInfo

A1111_KEY = "parameters"
APP_KEY = "latent_studio"
APP_SCHEMA = 1
NEGATIVE = "Negative prompt:"


def _quote(value: str) -> str:
    """A1111 quotes values that would break its `key: value, ...` line."""
    return json.dumps(value, ensure_ascii=False) if any(ch in value for ch in ",:\n\"") else value


def a1111_parameters(req: GenerationRequest, model_name: str, networks: tuple[dict, ...] = (),
                     grid: dict | None = None, decoder: str | None = None) -> str:
    fields = [
        ("Steps", str(req.steps)),
        ("Sampler", req.scheduler or ""),
        ("CFG scale", f"{req.guidance:g}"),
        ("Seed", str(req.seed)),
        ("Size", f"{req.width}x{req.height}"),
        ("Model", model_name),
        *edit_fields(req),
    ]
    for kind, field_name in (("lora", "Lora hashes"), ("embedding", "TI hashes")):  # A1111's own fields
        used = [n for n in networks if n["kind"] == kind]
        if used:
            fields.append((field_name, ", ".join(f"{n['name']}: {n['hash']}" for n in used)))
    fields += grid_fields(grid)
    if decoder:
        fields.append(("VAE Decoder", "TAESD"))  # A1111's own field for its fast decode method
    lines = [req.prompt]
    # A line of the prompt that starts like the negative line would be read as one, unless a real
    # negative line follows it (readers take the last one).
    if req.negative_prompt or any(line.startswith(NEGATIVE) for line in req.prompt.split("\n")):
        lines.append(f"{NEGATIVE} {req.negative_prompt}")
    lines.append(", ".join(f"{key}: {_quote(value)}" for key, value in fields))
    return "\n".join(lines)


def edit_fields(req: GenerationRequest) -> list[tuple[str, str]]:
    """An edit's settings under A1111's own names (img2img, inpainting and hires fix)."""
    edit = req.edit
    if edit is None:
        return []
    fields = [("Denoising strength", f"{edit.resolved_strength():g}")]
    if edit.kind in ("inpaint", "outpaint"):
        fields.append(("Mask blur", str(edit.mask_blur)))
    if edit.only_masked:
        fields += [("Inpaint area", "Only masked"), ("Masked area padding", str(edit.mask_padding))]
    if edit.outpaint is not None:
        fields.append(("Outpaint", ",".join(map(str, edit.outpaint))))  # ours: A1111's scripts write none
    if edit.upscale is not None:
        fields += [("Hires upscale", f"{edit.upscale:g}"), ("Hires upscaler", "Lanczos")]
    return fields


def grid_fields(grid: dict | None) -> list[tuple[str, str]]:
    """An X/Y/Z plot's axes as A1111's script writes them ("X Type: Steps, X Values: 4,8")."""
    fields = [("Script", "X/Y/Z plot")] if grid else []
    for key in ("x", "y", "z"):
        axis = (grid or {}).get(key)
        if axis:
            fields += [(f"{key.upper()} Type", axis["name"].capitalize()),
                       (f"{key.upper()} Values", ",".join(_csv(v) for v in axis["values"]))]
    return fields


def _csv(value) -> str:
    text = f"{value:g}" if isinstance(value, float) else str(value)
    return f'"{text}"' if "," in text or " " in text else text


def app_record(req: GenerationRequest, model: dict, created: float | None = None, networks: tuple[dict, ...] = (),
               grid: dict | None = None) -> str:
    record = {"schema": APP_SCHEMA, "kind": req.kind, "request": req.to_dict(), "model": model}
    if networks:
        record["networks"] = list(networks)
    if grid:
        record["grid"] = grid
    if created is not None:
        record["created"] = created
    return json.dumps(record, ensure_ascii=False, sort_keys=True)


def text_chunks(req: GenerationRequest, model: dict, created: float | None = None,
                networks: tuple[dict, ...] = (), grid: dict | None = None) -> dict[str, str]:
    """`req` is what made one image: its own seed, count 1. `networks`: the LoRAs and embeddings applied,
    {"kind": "lora" or "embedding", "name", "hash"} each. `grid`: an X/Y/Z plot's axes and cells."""
    return {
        A1111_KEY: a1111_parameters(req, model.get("name", ""), networks, grid, model.get("decoder")),
        APP_KEY: app_record(req, model, created, networks, grid),
    }


# --- reading ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageMetadata:
    """What an image's chunks tell: whose metadata it is, when it was made, and the settings as written
    (not validated: another tool's values may lie outside this app's ranges; see keep_valid())."""

    source: str = "none"  # latent_studio, a1111, fooocus, novelai, swarmui, drawthings, comfyui, invokeai, none
    created: float | None = None  # unix time, when the chunk says
    request: GenerationRequest = GenerationRequest()
    notes: tuple[str, ...] = ()  # what did not map ("used the first of 4 samplers", an unknown sampler)
    other: tuple[tuple[str, str], ...] = ()  # (chunk, excerpt) of metadata no reader understood

    def to_json(self) -> dict:
        settings = {name: getattr(self.request, name) for name in IMAGE_FIELDS}
        return {"source": self.source, "created": self.created, **settings, "notes": list(self.notes),
                "other": {key: excerpt for key, excerpt in self.other}}


EXCERPT = 300  # characters of a chunk no reader understood, shown as "other metadata"


def read_metadata(text: dict[str, str]) -> ImageMetadata:
    """Our own chunk first (exact), then every other tool's, most specific first. A chunk no reader
    understands is never taken for a prompt: it is kept, cut short, as `other`."""
    from desktop.gallery import foreign

    for reader in (_from_app, foreign.from_parameters, foreign.from_novelai, foreign.from_invokeai,
                   foreign.from_invokeai_legacy, foreign.from_dream, foreign.from_comfyui_prompt,
                   foreign.from_comfyui_workflow, foreign.from_drawthings):
        try:
            found = reader(text)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError):
            found = None
        if found is not None:
            return found
    return ImageMetadata(other=tuple((key, value[:EXCERPT]) for key, value in text.items()))


def read_image_metadata(path) -> tuple["PNGInfo", ImageMetadata]:
    """A PNG's size and metadata: text chunks (bounded), then stealth bits when the chunks say nothing.
    Raises UnreadablePNG/OSError for a file that is not a readable PNG."""
    from dataclasses import replace

    from desktop.gallery.pngchunks import read_png_info
    from desktop.gallery.stealth import read_stealth

    info = read_png_info(path)
    meta = read_metadata(info.text)
    if meta.source == "none":
        try:
            hidden = read_stealth(path, info.has_alpha)
        except (OSError, ValueError, SyntaxError):  # Pillow's errors for damaged pixel data
            hidden = None
        if hidden:
            found = read_metadata({A1111_KEY: hidden})
            meta = replace(found, source="a1111-stealth") if found.source != "none" else meta
    if info.oversized:
        note = f"metadata too large to read (over 4 MB): {', '.join(info.oversized)}"
        meta = replace(meta, notes=(*meta.notes, note))
    return info, meta


def _from_app(text: dict) -> ImageMetadata | None:
    if APP_KEY not in text:
        return None
    record = json.loads(text[APP_KEY])
    request = GenerationRequest.from_dict(record["request"])
    # The index and "reuse" name the model, not the path it was loaded from on that machine.
    request = request.replace(model=(record.get("model") or {}).get("name", "") or None)
    return ImageMetadata(source="latent_studio", created=as_float(record.get("created")), request=request)


# A1111's own pattern for the settings line (modules/infotext_utils.py).
_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
_SIZE = re.compile(r"^(\d+)x(\d+)$")
_SETTINGS_KEYS = {"Steps", "Sampler", "CFG scale", "Seed", "Size"}


def parse_settings_line(line: str) -> dict[str, str]:
    values = {}
    for key, value in _PARAM.findall(line):
        if value.startswith('"') and value.endswith('"'):
            try:
                value = json.loads(value)
            except ValueError:
                pass
        values[key.strip()] = value.strip() if isinstance(value, str) else str(value)
    return values


def from_a1111_text(chunk: str, source: str = "a1111") -> ImageMetadata | None:
    """A1111/Forge infotext (also Civitai's and Fooocus's A1111 scheme). Not JSON or XML, ever."""
    if chunk.lstrip().startswith(("{", "<?xml", "<x:xmpmeta")):
        return None
    lines = chunk.split("\n")
    settings = parse_settings_line(lines[-1])
    if len(_SETTINGS_KEYS & set(settings)) >= 2:
        lines = lines[:-1]
    else:
        settings = {}
    negative_at = max((i for i, line in enumerate(lines) if line.startswith(NEGATIVE)), default=None)
    negative = ""
    if negative_at is None:
        prompt = "\n".join(lines)
    else:
        prompt = "\n".join(lines[:negative_at])
        first = lines[negative_at][len(NEGATIVE):]
        negative = "\n".join([first[1:] if first.startswith(" ") else first] + lines[negative_at + 1 :])
    size = _SIZE.match(settings.get("Size", ""))
    width, height = (int(size.group(1)), int(size.group(2))) if size else (None, None)
    return ImageMetadata(source=source, request=GenerationRequest(
        prompt=prompt, negative_prompt=negative, model=settings.get("Model") or None,
        steps=as_int(settings.get("Steps")), guidance=as_float(settings.get("CFG scale")),
        seed=as_int(settings.get("Seed")), width=width, height=height,
        scheduler=scheduler_name(settings.get("Sampler", ""), settings.get("Schedule type", ""))))


# Other tools' sampler names for ours. ComfyUI's (also SwarmUI's and Fooocus's) come first; the
# schedule `karras` turns DPM++ 2M into DPM++ 2M Karras (see scheduler_name).
COMFY_SAMPLERS = {"euler": "Euler", "euler_ancestral": "Euler a", "ddim": "DDIM", "dpmpp_2m": "DPM++ 2M",
                  "uni_pc": "UniPC", "uni_pc_bh2": "UniPC", "lcm": "LCM", "heun": "Heun", "lms": "LMS"}
SAMPLER_ALIASES = {**COMFY_SAMPLERS, "plms": "PNDM", "euler a": "Euler a", "unipc": "UniPC",
                   "dpmpp_2m_k": "DPM++ 2M Karras", "euler_a": "Euler a",  # InvokeAI
                   "k_euler": "Euler", "k_euler_a": "Euler a", "k_euler_ancestral": "Euler a",  # InvokeAI 2.x, NovelAI
                   "k_lms": "LMS", "k_heun": "Heun", "k_dpmpp_2m": "DPM++ 2M", "ddim_v3": "DDIM"}


def scheduler_name(sampler: str, schedule: str = "") -> str | None:
    """Another tool's sampler (and schedule type) as one of our menu names, or None."""
    from desktop.engine.schedulers import SCHEDULER_NAMES

    key = sampler.strip().lower()
    name = next((n for n in SCHEDULER_NAMES if n.lower() == key), None) or SAMPLER_ALIASES.get(key)
    if name == "DPM++ 2M" and schedule.strip().lower() == "karras":
        name = "DPM++ 2M Karras"
    return name


def as_int(value) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def as_float(value) -> float | None:
    try:
        return float(str(value).strip())
    except (TypeError, ValueError):
        return None
