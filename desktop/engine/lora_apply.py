"""LoRAs on a loaded pipeline, through diffusers' loader (peft): kohya/A1111 and diffusers files.

Each file is loaded once per loaded model, as a named adapter, and stays loaded while the model
does; a job only sets which adapters are active and their weights (text encoders and denoiser
apart). An adapter at weight 0, or no LoRA at all, leaves the model's own output bit for bit:
the LoRA layers add their output times the weight, and inactive ones add nothing. A file that
changed on disk is loaded again.
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
    active: tuple = ()  # ((adapter, te, unet), ...) as set now
    files_loaded: int = 0  # a test checks that changing only the weights loads nothing


def apply(pipe, state: LoraState, wanted: list[tuple[LoraUse, LoraFile]]) -> None:
    """Make exactly these LoRAs active on `pipe`, at their weights."""
    active = tuple((adapter_name(lora), use.te, use.unet) for use, lora in wanted if use.te or use.unet)
    for use, lora in wanted:
        if use.te or use.unet:
            _ensure_loaded(pipe, state, lora)
    if active == state.active:
        return
    if not active:
        pipe.disable_lora()
    else:
        pipe.enable_lora()
        parts = pipe.get_list_adapters()  # {"unet": [...], "text_encoder": [...]}
        weights = [{part: (unet if part in ("unet", "transformer") else te)
                    for part, names in parts.items() if name in names} for name, te, unet in active]
        pipe.set_adapters([name for name, _, _ in active], adapter_weights=weights)
    state.active = active


def _ensure_loaded(pipe, state: LoraState, lora: LoraFile) -> None:
    name = adapter_name(lora)
    stat = lora.path.stat()
    identity = (str(lora.path), stat.st_size, stat.st_mtime_ns)
    if state.adapters.get(name) == identity:
        return
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
