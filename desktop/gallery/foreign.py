"""Other tools' metadata, each reader filling what its format has: prompt, negative, steps, CFG,
seed, size, sampler and model.

Formats: A1111/Forge/Civitai infotext (`parameters`), Fooocus (`parameters` holding JSON, its
`fooocus` scheme), SwarmUI (`parameters` holding `sui_image_params`), NovelAI (`Description` +
`Comment` JSON), InvokeAI (`invokeai_metadata`; 2.x `sd-metadata`; 1.x/2.x `Dream` command line),
ComfyUI (`prompt` API graph, `workflow` UI graph) and Draw Things (XMP `exif:UserComment` JSON).
Each reader takes all text chunks and returns ImageMetadata, or None when its chunk is absent or
holds nothing usable; malformed input raises ValueError/KeyError/TypeError, which the caller
treats as "not this format". What did not map goes into `notes`.
"""

from __future__ import annotations

import html
import json
import re
import shlex

from desktop.engine.request import GenerationRequest
from desktop.gallery.metadata import (A1111_KEY, COMFY_SAMPLERS, ImageMetadata, as_float, as_int, from_a1111_text,
                                     scheduler_name)

SAMPLER_NODES = ("KSampler", "KSamplerAdvanced", "SamplerCustom", "SamplerCustomAdvanced")
CHECKPOINT_INPUTS = ("ckpt_name", "unet_name", "model_name")

PLAIN_SCHEDULES = ("normal", "simple", "", "default")


def comfy_sampler(sampler: str, schedule: str = "") -> tuple[str | None, list[str]]:
    """A ComfyUI-style sampler and scheduler as one of ours, and a note when something did not map."""
    sampler, schedule = str(sampler or "").strip().lower(), str(schedule or "").strip().lower()
    name = COMFY_SAMPLERS.get(sampler)
    if name is None:
        return None, [f"sampler {sampler!r} has no equivalent here; the model's default sampler is used"] if sampler else []
    if name == "DPM++ 2M" and schedule == "karras":
        return "DPM++ 2M Karras", []
    if schedule not in PLAIN_SCHEDULES:
        return name, [f"scheduler {schedule!r} is not available for {name}; its normal spacing is used"]
    return name, []


# --- parameters: A1111 text, or Fooocus / SwarmUI JSON -----------------------------------------


def from_parameters(text: dict) -> ImageMetadata | None:
    chunk = text.get(A1111_KEY)
    if chunk is None:
        return None
    if not chunk.lstrip().startswith("{"):
        fooocus = "Fooocus" in text.get("fooocus_scheme", "") or "Version: Fooocus" in chunk
        return from_a1111_text(chunk, "fooocus" if fooocus else "a1111")
    data = json.loads(chunk)
    if isinstance(data.get("sui_image_params"), dict):
        return _from_swarmui(data["sui_image_params"])
    if "guidance_scale" in data or data.get("metadata_scheme") == "fooocus" or "fooocus" in str(data.get("version", "")).lower():
        return _from_fooocus(data)
    return None  # JSON of a tool we do not know: shown as other metadata, never as the prompt


def _from_fooocus(data: dict) -> ImageMetadata:
    width, height = _pair(data.get("resolution"))
    sampler, notes = comfy_sampler(data.get("sampler", "").removesuffix("_gpu"), data.get("scheduler", ""))
    styles = data.get("styles")
    if isinstance(styles, str):  # "['Fooocus V2', 'Fooocus Sharp']", a Python list written as text
        styles = [a or b for a, b in re.findall(r"'([^']*)'|\"([^\"]*)\"", styles)] if "[" in styles else [styles]
    if styles:
        notes.append(f"Fooocus styles not applied here: {', '.join(map(str, styles))}")
    model = str(data.get("base_model") or "").removesuffix(".safetensors") or None
    return ImageMetadata(source="fooocus", notes=tuple(notes), request=GenerationRequest(
        prompt=str(data.get("prompt", "")), negative_prompt=str(data.get("negative_prompt", "")),
        steps=as_int(data.get("steps")), guidance=as_float(data.get("guidance_scale")), seed=as_int(data.get("seed")),
        width=width, height=height, scheduler=sampler, model=model))


def _from_swarmui(p: dict) -> ImageMetadata:
    sampler, notes = comfy_sampler(p.get("sampler", ""), p.get("scheduler", ""))
    return ImageMetadata(source="swarmui", notes=tuple(notes), request=GenerationRequest(
        prompt=str(p.get("prompt", "")), negative_prompt=str(p.get("negativeprompt", "")),
        steps=as_int(p.get("steps")), guidance=as_float(p.get("cfgscale")), seed=as_int(p.get("seed")),
        width=as_int(p.get("width")), height=as_int(p.get("height")), scheduler=sampler,
        model=str(p.get("model") or "") or None))


def _pair(value) -> tuple[int | None, int | None]:
    """'(1024, 1024)', '1024*1024', '1024x1024' or [w, h] -> (w, h)."""
    numbers = re.findall(r"\d+", str(value or ""))
    return (int(numbers[0]), int(numbers[1])) if len(numbers) >= 2 else (None, None)


# --- NovelAI ------------------------------------------------------------------------------------


def from_novelai(text: dict) -> ImageMetadata | None:
    if "Comment" not in text or ("NovelAI" not in text.get("Software", "") and "Description" not in text):
        return None
    data = json.loads(text["Comment"])
    sampler = str(data.get("sampler", ""))
    name = scheduler_name(sampler, str(data.get("noise_schedule", "")))
    notes = [] if name or not sampler else [f"NovelAI sampler {sampler!r} has no equivalent here"]
    return ImageMetadata(source="novelai", notes=tuple(notes), request=GenerationRequest(
        prompt=str(data.get("prompt", text.get("Description", ""))), negative_prompt=str(data.get("uc", "")),
        steps=as_int(data.get("steps")), guidance=as_float(data.get("scale")), seed=as_int(data.get("seed")),
        width=as_int(data.get("width")), height=as_int(data.get("height")), scheduler=name,
        model=str(text.get("Source", "")) or None))


# --- InvokeAI -----------------------------------------------------------------------------------


def from_invokeai(text: dict) -> ImageMetadata | None:
    if "invokeai_metadata" not in text:
        return None
    data = json.loads(text["invokeai_metadata"])
    model = data.get("model") or {}
    return ImageMetadata(source="invokeai", request=GenerationRequest(
        prompt=str(data.get("positive_prompt", "")),
        negative_prompt=str(data.get("negative_prompt", "")),
        model=(str(model.get("name") or model.get("model_name") or "") if isinstance(model, dict) else str(model)) or None,
        seed=as_int(data.get("seed")), steps=as_int(data.get("steps")), guidance=as_float(data.get("cfg_scale")),
        width=as_int(data.get("width")), height=as_int(data.get("height")),
        scheduler=scheduler_name(str(data.get("scheduler", ""))),
    ))


def split_bracketed_negative(prompt: str) -> tuple[str, str]:
    """InvokeAI 2.x wrote the negative prompt as [bracketed] parts of the prompt."""
    negatives = re.findall(r"\[([^\[\]]*)\]", prompt)
    if not negatives:
        return prompt, ""
    positive = re.sub(r"\s*\[[^\[\]]*\]", "", prompt).strip()
    return positive, ", ".join(n.strip() for n in negatives)


def from_invokeai_legacy(text: dict) -> ImageMetadata | None:
    """InvokeAI 2.x `sd-metadata`."""
    if "sd-metadata" not in text:
        return None
    data = json.loads(text["sd-metadata"])
    image = data["image"]
    prompt = image.get("prompt", "")
    if isinstance(prompt, list):
        prompt = prompt[0].get("prompt", "") if prompt else ""
    prompt, negative = split_bracketed_negative(str(prompt))
    return ImageMetadata(source="invokeai", request=GenerationRequest(
        prompt=prompt, negative_prompt=negative, model=str(data.get("model_weights", "")) or None,
        seed=as_int(image.get("seed")), steps=as_int(image.get("steps")), guidance=as_float(image.get("cfg_scale")),
        width=as_int(image.get("width")), height=as_int(image.get("height")),
        scheduler=scheduler_name(str(image.get("sampler", ""))),
    ))


DREAM_FLAGS = {"-s": "steps", "--steps": "steps", "-S": "seed", "--seed": "seed", "-W": "width", "--width": "width",
               "-H": "height", "--height": "height", "-C": "cfg", "--cfg_scale": "cfg", "-A": "sampler",
               "--sampler": "sampler", "-m": "model", "--model": "model"}


def from_dream(text: dict) -> ImageMetadata | None:
    """InvokeAI 1.x/2.x `Dream`: the command line that made the image, `"prompt [negative]" -s 50 -S 42 …`."""
    if "Dream" not in text:
        return None
    words = shlex.split(text["Dream"])
    if not words:
        return None
    values, index = {}, 1
    while index < len(words) - 1:
        key = DREAM_FLAGS.get(words[index])
        if key:
            values[key] = words[index + 1]
            index += 2
        else:
            index += 1
    prompt, negative = split_bracketed_negative(words[0])
    return ImageMetadata(source="invokeai", request=GenerationRequest(
        prompt=prompt, negative_prompt=negative, steps=as_int(values.get("steps")), seed=as_int(values.get("seed")),
        guidance=as_float(values.get("cfg")), width=as_int(values.get("width")), height=as_int(values.get("height")),
        scheduler=scheduler_name(values.get("sampler", "")), model=values.get("model")))


# --- ComfyUI ------------------------------------------------------------------------------------


def from_comfyui_prompt(text: dict) -> ImageMetadata | None:
    """The API graph ComfyUI saves as `prompt`: {node id: {class_type, inputs}}; links are [id, slot]."""
    if "prompt" not in text:
        return None
    graph = json.loads(text["prompt"])
    samplers = sorted((k for k, n in graph.items() if isinstance(n, dict) and n.get("class_type") in SAMPLER_NODES),
                      key=lambda k: int(k) if str(k).isdigit() else 0)
    if not samplers:
        return None
    inputs = graph[samplers[0]].get("inputs", {})

    def follow(link, wanted: tuple[str, ...], depth: int = 0):
        """Walk upstream from a link until a node has one of the wanted literal inputs."""
        if not isinstance(link, list) or depth > 20 or str(link[0]) not in graph:
            return None
        node_inputs = graph[str(link[0])].get("inputs", {})
        for key in wanted:
            if isinstance(node_inputs.get(key), (str, int, float)):
                return node_inputs[key]
        for value in node_inputs.values():
            found = follow(value, wanted, depth + 1) if isinstance(value, list) else None
            if found is not None:
                return found
        return None

    sampler_name = inputs.get("sampler_name", follow(inputs.get("sampler"), ("sampler_name",)))
    sampler, notes = comfy_sampler(sampler_name or "", inputs.get("scheduler", ""))
    if len(samplers) > 1:
        notes.insert(0, f"used the first of {len(samplers)} samplers in the ComfyUI graph")
    latent = follow(inputs.get("latent_image"), ("width",))
    return ImageMetadata(source="comfyui", notes=tuple(notes), request=GenerationRequest(
        prompt=str(follow(inputs.get("positive"), ("text",)) or ""),
        negative_prompt=str(follow(inputs.get("negative"), ("text",)) or ""),
        model=str(follow(inputs.get("model"), CHECKPOINT_INPUTS) or "") or None,
        seed=as_int(inputs.get("seed", inputs.get("noise_seed"))),
        steps=as_int(inputs.get("steps")), guidance=as_float(inputs.get("cfg")),
        width=as_int(latent), height=as_int(follow(inputs.get("latent_image"), ("height",))) if latent else None,
        scheduler=sampler,
    ))


def from_comfyui_workflow(text: dict) -> ImageMetadata | None:
    """The UI graph (`workflow`), for images saved without the API graph: widget values by position."""
    if "workflow" not in text:
        return None
    workflow = json.loads(text["workflow"])
    nodes = {node["id"]: node for node in workflow.get("nodes", [])}
    links = {link[0]: link[1] for link in workflow.get("links", []) if isinstance(link, list)}
    samplers = [n for n in nodes.values() if n.get("type") == "KSampler"]
    if not samplers:
        return None
    sampler = samplers[0]
    values = sampler.get("widgets_values", [])

    def source_text(input_name: str) -> str:
        for slot in sampler.get("inputs", []):
            if slot.get("name") == input_name and slot.get("link") in links:
                node = nodes.get(links[slot["link"]], {})
                widgets = node.get("widgets_values") or [""]
                return str(widgets[0]) if isinstance(widgets[0], str) else ""
        return ""

    # KSampler widgets: seed, control_after_generate, steps, cfg, sampler_name, scheduler, denoise
    name, notes = comfy_sampler(values[4], values[5]) if len(values) > 5 else (None, [])
    if len(samplers) > 1:
        notes.insert(0, f"used the first of {len(samplers)} samplers in the ComfyUI workflow")
    return ImageMetadata(source="comfyui", notes=tuple(notes), request=GenerationRequest(
        prompt=source_text("positive"), negative_prompt=source_text("negative"),
        seed=as_int(values[0]) if values else None,
        steps=as_int(values[2]) if len(values) > 2 else None, guidance=as_float(values[3]) if len(values) > 3 else None,
        scheduler=name,
    ))


# --- Draw Things ----------------------------------------------------------------------------------


_USER_COMMENT = re.compile(r"<exif:UserComment>.*?<rdf:li[^>]*>(.*?)</rdf:li>", re.S)


def from_drawthings(text: dict) -> ImageMetadata | None:
    """Draw Things writes XMP whose exif:UserComment holds JSON: c, uc, seed, steps, scale, size…"""
    xmp = text.get("XML:com.adobe.xmp")
    match = _USER_COMMENT.search(xmp or "")
    if match is None:
        return None
    data = json.loads(html.unescape(match.group(1)))
    width, height = _pair(data.get("size"))
    sampler = scheduler_name(str(data.get("sampler", "")))
    notes = [] if sampler or not data.get("sampler") else [f"sampler {data['sampler']!r} has no equivalent here"]
    return ImageMetadata(source="drawthings", notes=tuple(notes), request=GenerationRequest(
        prompt=str(data.get("c", "")), negative_prompt=str(data.get("uc", "")), steps=as_int(data.get("steps")),
        guidance=as_float(data.get("scale")), seed=as_int(data.get("seed")), width=width, height=height,
        scheduler=sampler, model=str(data.get("model") or "") or None))
