"""LoRAs on a loaded pipeline, through diffusers' loader (peft): kohya/A1111 and diffusers files.

Each file is loaded once per loaded model, as a named adapter, and stays loaded while the model
does; a job only sets which adapters are active and their weights (text encoders and denoiser
apart). A file that changed on disk is loaded again.

Speed: unfused LoRA layers run two extra small matmuls per layer. The active set is therefore fused
into the base weights and stays fused while the next jobs ask for the same LoRAs and weights. When
they change, the base weights the LoRAs touch come back bit for bit from a copy kept on the CPU
(merging and unmerging in floating point would drift), so a LoRA at weight 0, or none, gives exactly
the model's own image. The copy costs memory the size of the touched layers, while LoRAs are loaded.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field

from desktop.engine.loras import LoraError, LoraFile, LoraUse


@dataclass
class LoraState:
    """What one loaded pipeline holds: adapter name -> the file identity it was loaded from."""

    adapters: dict[str, tuple] = field(default_factory=dict)
    active: tuple = ()  # ((adapter, te, unet), ...) as set (and fused) now
    files_loaded: int = 0  # a test checks that changing only the weights loads nothing
    originals: dict = field(default_factory=dict)  # id(base layer) -> (layer, its weight before fusing, on the CPU)
    fused: bool = False
    wrapped: list = field(default_factory=list)  # (parent module, attribute, peft wrapper) taken out while fused


def apply(pipe, state: LoraState, wanted: list[tuple[LoraUse, LoraFile]]) -> None:
    """Make exactly these LoRAs active on `pipe`, at their weights."""
    active = tuple((adapter_name(lora), use.te, use.unet) for use, lora in wanted if use.te or use.unet)
    for use, lora in wanted:
        if use.te or use.unet:
            _ensure_loaded(pipe, state, lora)
    if active == state.active:
        return
    unfuse(pipe, state)
    if not active:
        pipe.disable_lora()
    else:
        pipe.enable_lora()
        parts = pipe.get_list_adapters()  # {"unet": [...], "text_encoder": [...]}
        weights = [{part: (unet if part in ("unet", "transformer") else te)
                    for part, names in parts.items() if name in names} for name, te, unet in active]
        pipe.set_adapters([name for name, _, _ in active], adapter_weights=weights)
        _fuse(pipe, state, [name for name, _, _ in active])
    state.active = active


def _fuse(pipe, state: LoraState, names: list[str]) -> None:
    """Merge the active adapters into the base weights, then take peft's wrappers out of the modules:
    a merged wrapper still costs a Python call per layer, which shows on small models."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    wrapped = []
    for component in _components(pipe):
        for parent in getattr(pipe, component).modules():
            for attr, child in parent.named_children():
                if isinstance(child, BaseTunerLayer):
                    base = child.get_base_layer()
                    state.originals.setdefault(id(base), (base, base.weight.detach().to("cpu", copy=True)))
                    wrapped.append((parent, attr, child))
    pipe.fuse_lora(components=_components(pipe), lora_scale=1.0, adapter_names=names)
    for parent, attr, wrapper in wrapped:
        setattr(parent, attr, wrapper.get_base_layer())
    state.wrapped = wrapped
    state.fused = True


def unfuse(pipe, state: LoraState) -> None:
    """Back to peft's unfused LoRA layers over the base weights exactly as they were loaded."""
    if not state.fused:
        return
    for parent, attr, wrapper in state.wrapped:
        setattr(parent, attr, wrapper)
    pipe.unfuse_lora(components=_components(pipe))  # peft's bookkeeping; the weights come from the copy
    for base, weight in state.originals.values():
        base.weight.data.copy_(weight)
    state.wrapped, state.fused = [], False


def _components(pipe) -> list[str]:
    return [name for name in ("unet", "text_encoder", "text_encoder_2") if getattr(pipe, name, None) is not None]


def _ensure_loaded(pipe, state: LoraState, lora: LoraFile) -> None:
    name = adapter_name(lora)
    stat = lora.path.stat()
    identity = (str(lora.path), stat.st_size, stat.st_mtime_ns)
    if state.adapters.get(name) == identity:
        return
    unfuse(pipe, state)  # adapters are added to unmerged layers only
    if name in state.adapters:  # the file changed on disk
        pipe.delete_adapters([name])
        del state.adapters[name]
        state.active = ()
    try:
        with warnings.catch_warnings():  # peft warns that a model holds several adapters: that is the point
            warnings.filterwarnings("ignore", message="Already found a `peft_config`")
            pipe.load_lora_weights(str(lora.path), adapter_name=name)
    except Exception as exc:  # diffusers raises many types for a file it cannot map
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:240]
        raise LoraError(f"The LoRA {lora.name} ({lora.format} format, for {lora.base}) could not be applied to this "
                        f"model: {first}") from exc
    state.adapters[name] = identity
    state.files_loaded += 1


def adapter_name(lora: LoraFile) -> str:
    """peft adapter names become module attribute names: letters, digits and underscores only."""
    return "lora_" + re.sub(r"\W", "_", lora.name)
