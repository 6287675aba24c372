from __future__ import annotations

import pytest
import torch

from training.policies.normalize import Normalizer, export_normalization_stats

FEATURES = {"observation.state": 3, "action": 2}


def _stats() -> dict[str, dict[str, torch.Tensor]]:
    return {
        "observation.state": {
            "mean": torch.tensor([1.0, -2.0, 0.5]),
            "std": torch.tensor([2.0, 0.001, 1.0]),  # the middle std is below the 1e-2 clip
            "min": torch.tensor([-3.0, -2.0, 0.0]),
            "max": torch.tensor([5.0, -2.0, 1.0]),  # the middle dimension is constant
        },
        "action": {
            "mean": torch.tensor([0.0, 10.0]),
            "std": torch.tensor([1.0, 5.0]),
            "min": torch.tensor([-1.0, 0.0]),
            "max": torch.tensor([3.0, 20.0]),
        },
    }


@pytest.mark.parametrize("mode", ["mean_std", "min_max"])
def test_normalize_then_unnormalize_gives_back_the_input(mode: str) -> None:
    normalizer = Normalizer(FEATURES, _stats(), dict.fromkeys(FEATURES, mode))
    x = torch.randn(4, 6, 3) * 3
    restored = normalizer.unnormalize("observation.state", normalizer.normalize("observation.state", x))
    torch.testing.assert_close(restored, x, atol=1e-4, rtol=1e-5)


def test_mean_std_clips_small_std_to_one_hundredth() -> None:
    normalizer = Normalizer(FEATURES, _stats(), dict.fromkeys(FEATURES, "mean_std"))
    x = torch.tensor([[3.0, -1.99, 1.5]])
    expected = torch.tensor([[1.0, 0.01 / 1e-2, 1.0]])
    torch.testing.assert_close(normalizer.normalize("observation.state", x), expected)


def test_min_max_maps_the_range_to_minus_one_one_and_only_shifts_a_constant_dimension() -> None:
    normalizer = Normalizer(FEATURES, _stats(), dict.fromkeys(FEATURES, "min_max"))
    low = normalizer.normalize("action", torch.tensor([-1.0, 0.0]))
    high = normalizer.normalize("action", torch.tensor([3.0, 20.0]))
    torch.testing.assert_close(low, torch.tensor([-1.0, -1.0]))
    torch.testing.assert_close(high, torch.tensor([1.0, 1.0]))
    state = normalizer.normalize("observation.state", torch.tensor([1.0, -1.5, 0.5]))
    torch.testing.assert_close(state, torch.tensor([0.0, 0.5, 0.0]))


def test_statistics_are_in_the_state_dict_and_a_placeholder_normalizer_refuses_until_loaded() -> None:
    trained = Normalizer(FEATURES, _stats(), dict.fromkeys(FEATURES, "mean_std"))
    rebuilt = Normalizer(FEATURES, None, dict.fromkeys(FEATURES, "mean_std"))
    x = torch.randn(5, 2)
    with pytest.raises(RuntimeError, match="never set"):
        rebuilt.normalize("action", x)
    rebuilt.load_state_dict(trained.state_dict())
    torch.testing.assert_close(rebuilt.normalize("action", x), trained.normalize("action", x))


def test_export_gives_a_flat_dict_of_the_held_statistics() -> None:
    normalizer = Normalizer(FEATURES, _stats(), {"observation.state": "min_max", "action": "mean_std"})
    exported = export_normalization_stats(normalizer)
    assert sorted(exported) == ["action/mean", "action/std", "observation.state/max", "observation.state/min"]
    torch.testing.assert_close(exported["observation.state/max"], _stats()["observation.state"]["max"])


def test_bad_inputs_fail_with_a_message_naming_the_feature() -> None:
    with pytest.raises(ValueError, match="action"):
        Normalizer(FEATURES, {"observation.state": _stats()["observation.state"]}, dict.fromkeys(FEATURES, "mean_std"))
    with pytest.raises(ValueError, match="quantile"):
        Normalizer(FEATURES, _stats(), dict.fromkeys(FEATURES, "quantile"))
    wrong_shape = _stats()
    wrong_shape["action"]["mean"] = torch.zeros(3)
    with pytest.raises(ValueError, match="shape"):
        Normalizer(FEATURES, wrong_shape, dict.fromkeys(FEATURES, "mean_std"))
