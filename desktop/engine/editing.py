"""Preparing an edit's pictures and finishing its result, in pixels (PIL and numpy; no torch).

An EditPlan says what the model starts from (`image`, and `mask` for inpainting, both at the size the
model works at) and how its output becomes the result (`finish`): pasted back through the soft
mask, so pixels outside the mask's blur band stay exactly as they were.

Sizes: an init image keeps its aspect ratio. Without a requested size it keeps its own size, scaled
down to the model's native area when it is more than 4 times that, and each side is rounded to a
multiple of 8 by cropping at most 7 pixels from the centre; with a requested size it is scaled to
cover that size and centre-cropped. A mask of another size is scaled to the image's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from desktop.engine.request import MAX_SIDE, MIN_SIDE, Edit, GenerationRequest
from desktop.errors import InvalidRequest, LatentStudioError

MAX_INPUT_PIXELS = 64_000_000  # 8000 x 8000: larger inputs are refused before they are decoded
MAX_INPUT_SIDE = 16384
LARGE_AREA_FACTOR = 4  # an init image over 4x the model's native area is scaled down to it
OUTPAINT_OVERLAP = 8  # pixels of the original the model repaints for context (restored afterwards)


def denoising_steps(steps: int, strength: float) -> int:
    """Image to image runs the last round(steps x strength) steps of the schedule, never fewer than one."""
    return max(1, min(steps, round(steps * strength)))


def start_noise(steps: int, strength: float) -> tuple[int, float]:
    """(timestep, alpha-bar) an edit starts from, with Stable Diffusion's schedule (scaled linear betas,
    leading spacing): what the strength slider's preview shows without loading a model."""
    import numpy as np

    betas = np.linspace(0.00085**0.5, 0.012**0.5, 1000) ** 2
    alpha_bar = np.cumprod(1 - betas)
    timesteps = [k * (1000 // steps) + 1 for k in reversed(range(steps))]
    t = timesteps[steps - denoising_steps(steps, strength)]
    return t, float(alpha_bar[t])


def noised_preview(image, alpha_bar: float, seed: int = 0):
    """The picture as the model will start from it: sqrt(a) x image + sqrt(1 - a) x noise, in pixels."""
    import numpy as np
    from PIL import Image

    x = np.asarray(image.convert("RGB"), dtype=np.float32) / 127.5 - 1
    noise = np.random.default_rng(seed).standard_normal(x.shape).astype(np.float32)
    mixed = alpha_bar**0.5 * x + (1 - alpha_bar) ** 0.5 * noise
    return Image.fromarray(((np.clip(mixed, -1, 1) + 1) * 127.5).astype(np.uint8))


def open_image(path: Path, what: str = "init image"):
    """Load an image file as a PIL image, checked before its pixels are decoded."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        opened = Image.open(path)
    except FileNotFoundError:
        raise LatentStudioError(f"The {what} {path} does not exist.") from None
    except IsADirectoryError:
        raise LatentStudioError(f"The {what} {path} is a folder, not an image.") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise LatentStudioError(f"The {what} {path} is not an image this app can read ({exc}).") from None
    except Image.DecompressionBombError:
        raise LatentStudioError(f"The {what} {path} is absurdly large; use an image under "
                                f"{MAX_INPUT_PIXELS // 1_000_000} megapixels.") from None
    with opened:
        check_input_size(opened.size, what, path)
        try:
            opened.load()
        except (OSError, SyntaxError, ValueError) as exc:  # truncated or damaged pixel data
            raise LatentStudioError(f"The {what} {path} is damaged or truncated ({exc}).") from None
        return opened.copy()


def check_input_size(size: tuple[int, int], what: str, path) -> None:
    width, height = size
    if width * height > MAX_INPUT_PIXELS or max(width, height) > MAX_INPUT_SIDE:
        raise LatentStudioError(f"The {what} {path} is {width}x{height}: too large to edit (at most "
                                f"{MAX_INPUT_PIXELS // 1_000_000} megapixels and {MAX_INPUT_SIDE} pixels a side). "
                                "Scale it down first.")


def check_mask(mask, kind: str) -> None:
    """A mask with nothing to repaint is a mistake; an all-white one is img2img said the long way."""
    low, high = mask.getextrema()
    if high < 128:
        raise InvalidRequest("The mask is empty (all black): paint white where the image should change.")
    if low >= 128 and kind == "inpaint":
        raise InvalidRequest("The mask is all white, which repaints everything: leave the mask out "
                             "(image to image) or paint only the part to change.")


@dataclass
class EditPlan:
    image: object  # PIL RGB the model starts from, at the working size
    mask: object | None  # PIL L at the working size (white = repaint); None for img2img
    size: tuple[int, int]  # the result's size
    finish: Callable[[object], object]  # the model's output (working size) -> the result
    tiled_vae: bool = False  # the working size is beyond the model's native size


def plan(edit: Edit, init, mask, request: GenerationRequest, native: tuple[int, int], seed: int) -> EditPlan:
    """`init`/`mask`: the stored inputs (PIL). `request.width/height`: a requested size or None."""
    requested = (request.width, request.height) if request.width and request.height else None
    if edit.kind == "upscale":
        size = _checked(round8(init.width * edit.upscale), round8(init.height * edit.upscale), "upscaled image")
        image = init.resize(size, _lanczos())
        return EditPlan(image, None, size, _same, tiled_vae=size[0] * size[1] > native[0] * native[1])
    canvas = fit(init, requested or natural_size(init.size, native))
    if edit.kind == "img2img":
        return EditPlan(canvas, None, canvas.size, _same)
    if edit.kind == "outpaint":
        return _outpaint(edit, canvas, seed)
    mask = mask.convert("L").resize(canvas.size, _bilinear())
    check_mask(mask, edit.kind)
    soft = soft_mask(mask, edit.mask_blur)
    if edit.only_masked:
        return _only_masked(edit, canvas, mask, soft, native)
    return EditPlan(canvas, mask, canvas.size, lambda out: paste_back(out, canvas, soft))


def natural_size(size: tuple[int, int], native: tuple[int, int]) -> tuple[int, int]:
    """The size an init image is worked at when none is asked for (see the module's docstring)."""
    width, height = size
    limit = native[0] * native[1] * LARGE_AREA_FACTOR
    scale = min(1.0, math.sqrt(limit / (width * height)), MAX_SIDE / max(width, height))
    if scale < 1.0:
        width, height = width * scale, height * scale
    return _checked(int(width) // 8 * 8, int(height) // 8 * 8, "init image")


def fit(image, size: tuple[int, int]):
    """Scale to cover `size` and crop the overflow from the centre (the aspect ratio is kept)."""
    from PIL import ImageOps

    if image.size == size:
        return image.copy()
    return ImageOps.fit(image, size, _lanczos())


def round8(value: float) -> int:
    return max(8, int(round(value / 8)) * 8)


def _checked(width: int, height: int, what: str) -> tuple[int, int]:
    if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE):
        raise InvalidRequest(f"The {what} would be {width}x{height}; each side must be from {MIN_SIDE} to "
                             f"{MAX_SIDE} pixels.")
    return width, height


def soft_mask(mask, blur: int):
    from PIL import ImageFilter

    return mask.filter(ImageFilter.GaussianBlur(blur)) if blur else mask


def paste_back(generated, original, soft):
    """The generated pixels where the mask is white, the original ones where it is black, mixed in the band."""
    from PIL import Image

    return Image.composite(generated.convert("RGB"), original, soft)


def _same(image):
    return image


def _only_masked(edit: Edit, canvas, mask, soft, native: tuple[int, int]) -> EditPlan:
    """Work on the mask's box (plus padding, grown to the model's aspect ratio) at the model's size."""
    box = crop_box(mask, edit.mask_padding, canvas.size, native)
    work = canvas.crop(box).resize(native, _lanczos())
    work_mask = mask.crop(box).resize(native, _bilinear())

    def finish(generated):
        full = canvas.copy()
        full.paste(generated.convert("RGB").resize((box[2] - box[0], box[3] - box[1]), _lanczos()), box[:2])
        return paste_back(full, canvas, soft)

    return EditPlan(work, work_mask, canvas.size, finish)


def crop_box(mask, padding: int, size: tuple[int, int], native: tuple[int, int]) -> tuple[int, int, int, int]:
    left, top, right, bottom = mask.point(lambda v: 255 if v >= 128 else 0).getbbox()
    left, top, right, bottom = left - padding, top - padding, right + padding, bottom + padding
    ratio = native[0] / native[1]
    width, height = right - left, bottom - top
    if width / height < ratio:  # grow the narrow side to the model's aspect ratio
        grow = height * ratio - width
        left, right = left - grow / 2, right + grow / 2
    else:
        grow = width / ratio - height
        top, bottom = top - grow / 2, bottom + grow / 2
    return _shift_inside((left, top, right, bottom), size)


def _shift_inside(box, size) -> tuple[int, int, int, int]:
    """Move a box inside the image (shrinking it only where it is larger than the image)."""
    left, top, right, bottom = box
    for lo, hi, limit, index in ((left, right, size[0], 0), (top, bottom, size[1], 1)):
        if hi - lo > limit:
            lo, hi = 0, limit
        elif lo < 0:
            lo, hi = 0, hi - lo
        elif hi > limit:
            lo, hi = lo - (hi - limit), limit
        if index == 0:
            left, right = lo, hi
        else:
            top, bottom = lo, hi
    return int(round(left)), int(round(top)), int(round(right)), int(round(bottom))


def _outpaint(edit: Edit, canvas, seed: int) -> EditPlan:
    """A larger canvas: the new area pre-filled with the nearest edge colours plus noise, repainted,
    and a seam that blends inside the new area, so the original pixels stay exactly as they were."""
    import numpy as np
    from PIL import Image, ImageFilter

    left, top, right, bottom = edit.outpaint
    size = _checked(canvas.width + left + right, canvas.height + top + bottom, "outpainted image")
    pixels = np.asarray(canvas, dtype=np.float32)
    padded = np.pad(pixels, ((top, bottom), (left, right), (0, 0)), mode="edge")
    new_area = np.ones(padded.shape[:2], dtype=bool)
    new_area[top : top + canvas.height, left : left + canvas.width] = False
    noise = np.random.default_rng(seed).normal(0, 24, padded.shape).astype(np.float32)
    padded[new_area] += noise[new_area]
    filled = Image.fromarray(np.clip(padded, 0, 255).astype(np.uint8))
    filled = Image.composite(filled.filter(ImageFilter.GaussianBlur(4)), filled, _mask_of(new_area))
    filled.paste(canvas, (left, top))

    repaint = _mask_of(new_area).filter(ImageFilter.MaxFilter(2 * OUTPAINT_OVERLAP + 1))  # context for the model
    seam = np.asarray(soft_mask(_mask_of(new_area), edit.mask_blur), dtype=np.float32)
    seam = np.where(new_area, (seam - 127.5) * 2, 0)  # the band lies in the new area only
    seam = Image.fromarray(np.clip(seam, 0, 255).astype(np.uint8))
    return EditPlan(filled, repaint, size, lambda out: paste_back(out, filled, seam))


def _mask_of(area) -> object:
    import numpy as np
    from PIL import Image

    return Image.fromarray(np.where(area, 255, 0).astype(np.uint8))


def _lanczos():
    from PIL import Image

    return Image.Resampling.LANCZOS


def _bilinear():
    from PIL import Image

    return Image.Resampling.BILINEAR
