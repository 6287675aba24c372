"""Per-feature normalisation whose statistics live in buffers, so they travel inside the policy's state_dict.

Two modes, on the trailing (feature) dimension:
- "mean_std": (x - mean) / max(std, std_eps). ACT clips std to at least 1e-2.
- "min_max": an affine map of [min, max] onto [-1, 1]. As Diffusion Policy's LinearNormalizer does, a dimension whose
  range is below `range_eps` (1e-4) is only shifted (x - min), so a constant feature does not blow up.

Camera features are normalised per channel: their statistics have one value per channel and apply to (..., C, H, W).

When a policy is rebuilt from a checkpoint the stats are None: the buffers hold +inf placeholders until
`load_state_dict` fills them, and normalising before that raises instead of silently producing garbage.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import torch
from torch import Tensor, nn

NormalizationMode = Literal["mean_std", "min_max"]

STAT_NAMES_BY_MODE: dict[str, tuple[str, str]] = {"mean_std": ("mean", "std"), "min_max": ("min", "max")}
DEFAULT_STD_EPS = 1e-2
DEFAULT_RANGE_EPS = 1e-4


def _buffer_safe_name(key: str) -> str:
    # Module and buffer names may not contain dots; feature names ("observation.state") do.
    return key.replace(".", "__")


class _FeatureStats(nn.Module):
    """The two statistics one feature needs for its mode, as buffers named after the statistic (only the mode's two
    exist: mean and std, or min and max)."""

    mean: Tensor
    std: Tensor
    min: Tensor
    max: Tensor

    def __init__(self, dim: int, mode: str, stats: Mapping[str, object] | None):
        super().__init__()
        self.mode = mode
        for stat_name in STAT_NAMES_BY_MODE[mode]:
            if stats is None:
                value = torch.full((dim,), float("inf"))
            else:
                if stat_name not in stats or stats[stat_name] is None:
                    raise ValueError(f"normalisation mode {mode!r} needs the {stat_name!r} statistic")
                value = torch.as_tensor(stats[stat_name], dtype=torch.float32).detach().clone().reshape(-1)
                if value.shape != (dim,):
                    raise ValueError(f"statistic {stat_name!r} has shape {tuple(value.shape)}, expected ({dim},)")
            self.register_buffer(stat_name, value)


class Normalizer(nn.Module):
    """Normalises and unnormalises named features.

    `features` maps feature name -> width; `stats[name]` holds at least the statistics its mode needs (tensors or
    arrays of shape (width,)), or `stats` is None to build placeholders that `load_state_dict` fills.
    """

    def __init__(
        self,
        features: Mapping[str, int],
        stats: Mapping[str, Mapping[str, object]] | None,
        modes: Mapping[str, NormalizationMode],
        std_eps: float = DEFAULT_STD_EPS,
        range_eps: float = DEFAULT_RANGE_EPS,
        image_keys: tuple[str, ...] = (),
    ):
        super().__init__()
        self.image_keys = frozenset(image_keys)
        self.std_eps = std_eps
        self.range_eps = range_eps
        self.keys = list(features)
        self.modes: dict[str, NormalizationMode] = {}
        per_feature: dict[str, nn.Module] = {}
        for key, dim in features.items():
            mode = modes.get(key)
            if mode not in STAT_NAMES_BY_MODE:
                raise ValueError(
                    f"feature {key!r}: normalisation mode {mode!r} is not one of {list(STAT_NAMES_BY_MODE)}"
                )
            if stats is not None and key not in stats:
                raise ValueError(f"no normalisation statistics for feature {key!r}")
            safe_name = _buffer_safe_name(key)
            if safe_name in per_feature:
                raise ValueError(f"feature names {key!r} and another one collide as buffer name {safe_name!r}")
            per_feature[safe_name] = _FeatureStats(dim, mode, None if stats is None else stats[key])
            self.modes[key] = mode
        self.stats = nn.ModuleDict(per_feature)
        self._checked_loaded = False

    def _stats_of(self, key: str) -> _FeatureStats:
        if key not in self.modes:
            raise KeyError(f"feature {key!r} has no normaliser (known: {self.keys})")
        feature_stats = self.stats[_buffer_safe_name(key)]
        assert isinstance(feature_stats, _FeatureStats)
        if not self._checked_loaded:
            # One check (one device sync) per module lifetime, not per call.
            if any(torch.isinf(buffer).any() for buffer in self.buffers()):
                raise RuntimeError(
                    "normalisation statistics were never set: pass stats or load a state_dict that holds them"
                )
            self._checked_loaded = True
        return feature_stats

    def _min_max_affine(self, feature_stats: _FeatureStats) -> tuple[Tensor, Tensor]:
        value_range = feature_stats.max - feature_stats.min
        degenerate = value_range < self.range_eps
        scale = torch.where(degenerate, torch.ones_like(value_range), 2.0 / value_range.clamp_min(self.range_eps))
        offset = torch.where(degenerate, -feature_stats.min, -1.0 - scale * feature_stats.min)
        return scale, offset

    def _affine(self, key: str) -> tuple[Tensor, Tensor]:
        """(scale, offset) with normalize(x) = x * scale + offset, shaped to broadcast over the feature's layout."""
        feature_stats = self._stats_of(key)
        if self.modes[key] == "mean_std":
            scale = 1.0 / feature_stats.std.clamp_min(self.std_eps)
            offset = -feature_stats.mean * scale
        else:
            scale, offset = self._min_max_affine(feature_stats)
        if key in self.image_keys:  # per channel of (..., C, H, W)
            return scale[:, None, None], offset[:, None, None]
        return scale, offset

    def normalize(self, key: str, x: Tensor) -> Tensor:
        scale, offset = self._affine(key)
        return x * scale + offset

    def unnormalize(self, key: str, x: Tensor) -> Tensor:
        scale, offset = self._affine(key)
        return (x - offset) / scale

    def _load_from_state_dict(self, *args: object, **kwargs: object) -> None:
        self._checked_loaded = False
        super()._load_from_state_dict(*args, **kwargs)


def export_normalization_stats(normalizer: Normalizer) -> dict[str, Tensor]:
    """The held statistics as a flat {"<feature>/<stat>": tensor} dict (the layout of training/checkpoint.py)."""
    flat = {}
    for key in normalizer.keys:
        feature_stats = normalizer.stats[_buffer_safe_name(key)]
        for stat_name in STAT_NAMES_BY_MODE[normalizer.modes[key]]:
            flat[f"{key}/{stat_name}"] = getattr(feature_stats, stat_name).detach().cpu().contiguous().clone()
    return flat


def find_normalizers(module: nn.Module) -> list[Normalizer]:
    return [m for m in module.modules() if isinstance(m, Normalizer)]


def export_policy_normalization_stats(policy: nn.Module) -> dict[str, Tensor]:
    """All statistics a policy holds (its single Normalizer's, as every policy here has one)."""
    flat: dict[str, Tensor] = {}
    for normalizer in find_normalizers(policy):
        flat.update(export_normalization_stats(normalizer))
    return flat
