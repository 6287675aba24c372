from __future__ import annotations

import torch

from tests.training.policies.synthetic import FEATURES, SyntheticTask, small_config
from training.policies import make_policy


def test_select_action_repeats_the_first_observation_after_reset_then_slides_the_window() -> None:
    config = small_config("mlp", n_obs_steps=3)
    task = SyntheticTask()
    generator = torch.Generator().manual_seed(0)
    policy = make_policy(config, FEATURES, task.stats(config, generator)).eval()
    frames = [{k: torch.randn(2, d, generator=generator) for k, d in FEATURES.observation.items()} for _ in range(3)]

    def expected(window: list[dict[str, torch.Tensor]]) -> torch.Tensor:
        history = {k: torch.stack([frame[k] for frame in window], dim=1) for k in FEATURES.observation}
        return policy.normalizer.unnormalize("action", policy.network(policy._normalized_history(history)))

    policy.reset()
    torch.testing.assert_close(policy.select_action(frames[0]), expected([frames[0]] * 3))
    torch.testing.assert_close(policy.select_action(frames[1]), expected([frames[0], frames[0], frames[1]]))
    torch.testing.assert_close(policy.select_action(frames[2]), expected(frames))
    policy.reset()
    torch.testing.assert_close(policy.select_action(frames[2]), expected([frames[2]] * 3))


def test_mse_loss_option_trains_on_squared_error_and_still_reports_l1() -> None:
    config = small_config("mlp", loss="mse")
    task = SyntheticTask()
    generator = torch.Generator().manual_seed(0)
    policy = make_policy(config, FEATURES, task.stats(config, generator))
    batch = task.batch(config, 8, generator)
    loss, metrics = policy(batch)
    target = policy.normalizer.normalize("action", batch["action"][:, 0])
    predicted = policy.network(policy._normalized_history(batch))
    torch.testing.assert_close(loss, (predicted - target).pow(2).mean())
    assert metrics["l1"] == (predicted - target).abs().mean().item()
