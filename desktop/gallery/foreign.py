"""Other tools' metadata: ComfyUI (`prompt` graph, `workflow` UI graph) and InvokeAI.

Each reader takes the chunk's text and returns ImageMetadata, or None when the chunk holds nothing
usable; malformed input raises ValueError/KeyError/TypeError, which the caller treats as "skip".
"""

from __future__ import annotations

import json

from desktop.engine.request import GenerationRequest
from desktop.gallery.metadata import ImageMetadata, as_float, as_int, scheduler_name

SAMPLER_NODES = ("KSampler", "KSamplerAdvanced", "SamplerCustom")
CHECKPOINT_INPUTS = ("ckpt_name", "unet_name", "model_name")


def from_invokeai(chunk: str) -> ImageMetadata | None:
    data = json.loads(chunk)
    model = data.get("model") or {}
    return ImageMetadata(source="invokeai", request=GenerationRequest(
        prompt=str(data.get("positive_prompt", "")),
        negative_prompt=str(data.get("negative_prompt", "")),
        model=(str(model.get("name") or model.get("model_name") or "") if isinstance(model, dict) else str(model)) or None,
        seed=as_int(data.get("seed")), steps=as_int(data.get("steps")), guidance=as_float(data.get("cfg_scale")),
        width=as_int(data.get("width")), height=as_int(data.get("height")),
        scheduler=scheduler_name(str(data.get("scheduler", ""))),
    ))


def from_invokeai_legacy(chunk: str) -> ImageMetadata | None:
    """InvokeAI 2.x `sd-metadata`: prompt may carry the negative in [brackets]."""
    data = json.loads(chunk)
    image = data["image"]
    prompt = image.get("prompt", "")
    if isinstance(prompt, list):
        prompt = prompt[0].get("prompt", "") if prompt else ""
    return ImageMetadata(source="invokeai", request=GenerationRequest(
        prompt=str(prompt), model=str(data.get("model_weights", "")) or None,
        seed=as_int(image.get("seed")), steps=as_int(image.get("steps")), guidance=as_float(image.get("cfg_scale")),
        width=as_int(image.get("width")), height=as_int(image.get("height")),
        scheduler=scheduler_name(str(image.get("sampler", ""))),
    ))


def from_comfyui_prompt(chunk: str) -> ImageMetadata | None:
    """The API graph ComfyUI saves as `prompt`: {node id: {class_type, inputs}}; links are [id, slot]."""
    graph = json.loads(chunk)
    sampler = next((n for n in graph.values() if isinstance(n, dict) and n.get("class_type") in SAMPLER_NODES), None)
    if sampler is None:
        return None
    inputs = sampler.get("inputs", {})

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

    latent = follow(inputs.get("latent_image"), ("width",))
    return ImageMetadata(source="comfyui", request=GenerationRequest(
        prompt=str(follow(inputs.get("positive"), ("text",)) or ""),
        negative_prompt=str(follow(inputs.get("negative"), ("text",)) or ""),
        model=str(follow(inputs.get("model"), CHECKPOINT_INPUTS) or "") or None,
        seed=as_int(inputs.get("seed", inputs.get("noise_seed"))),
        steps=as_int(inputs.get("steps")), guidance=as_float(inputs.get("cfg")),
        width=as_int(latent), height=as_int(follow(inputs.get("latent_image"), ("height",))) if latent else None,
        scheduler=scheduler_name(str(inputs.get("sampler_name", "")), str(inputs.get("scheduler", ""))),
    ))


def from_comfyui_workflow(chunk: str) -> ImageMetadata | None:
    """The UI graph (`workflow`), for images saved without the API graph: widget values by position."""
    workflow = json.loads(chunk)
    nodes = {node["id"]: node for node in workflow.get("nodes", [])}
    links = {link[0]: link[1] for link in workflow.get("links", []) if isinstance(link, list)}
    sampler = next((n for n in nodes.values() if n.get("type") in SAMPLER_NODES[:1]), None)
    if sampler is None:
        return None
    values = sampler.get("widgets_values", [])

    def source_text(input_name: str) -> str:
        for slot in sampler.get("inputs", []):
            if slot.get("name") == input_name and slot.get("link") in links:
                node = nodes.get(links[slot["link"]], {})
                widgets = node.get("widgets_values") or [""]
                return str(widgets[0]) if isinstance(widgets[0], str) else ""
        return ""

    # KSampler widgets: seed, control_after_generate, steps, cfg, sampler_name, scheduler, denoise
    return ImageMetadata(source="comfyui", request=GenerationRequest(
        prompt=source_text("positive"), negative_prompt=source_text("negative"),
        seed=as_int(values[0]) if values else None,
        steps=as_int(values[2]) if len(values) > 2 else None, guidance=as_float(values[3]) if len(values) > 3 else None,
        scheduler=scheduler_name(str(values[4]), str(values[5])) if len(values) > 5 else None,
    ))
