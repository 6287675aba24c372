"""The image sizes a policy works at, derived from the camera's size unless the config names them: frames are
decoded (resized) to the input size once, then cropped to the crop size (randomly in training, centred in eval).
Pure Python: the trainer, the frame cache and the policies all call it, so they agree without the dataset."""

from __future__ import annotations

# Cameras larger than this on their longer side are scaled down to it (ALOHA's 480x640 becomes 192x256).
MAX_DERIVED_SIDE = 256
MIN_SIDE = 8


def input_size(native_hw: tuple[int, int], image_size: tuple[int, int] | None) -> tuple[int, int]:
    """(height, width) frames are decoded at: `image_size` when set, else the native size scaled down so its longer
    side is at most MAX_DERIVED_SIDE (aspect kept)."""
    if image_size is not None:
        return int(image_size[0]), int(image_size[1])
    height, width = native_hw
    scale = min(1.0, MAX_DERIVED_SIDE / max(height, width))
    return max(MIN_SIDE, round(height * scale)), max(MIN_SIDE, round(width * scale))


def crop_size(input_hw: tuple[int, int], crop_ratio: float) -> tuple[int, int]:
    """(height, width) of the crop: `crop_ratio` of each side (Diffusion Policy's PushT: 96 -> 84 is 0.875)."""
    return tuple(max(min(MIN_SIDE, side), round(side * crop_ratio)) for side in input_hw)  # type: ignore[return-value]
