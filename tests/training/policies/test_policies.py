"""Behaviour every policy family shares: the batch contract, learning, and rebuilding from a state_dict."""

from __future__ import annotations

import math

import pytest
import torch

from tests.training.policies.synthetic import FEATURES, SyntheticTask, small_config
from training.policies import get_policy_class, make_policy

POLICY_TYPES = ["mlp", "act", "diffusion"]


@pytest.mark.parametrize("policy_type", POLICY_TYPES)
def test_forward_gives_a_finite_scalar_loss_and_float_metrics_and_gradients(policy_type: str) -> None:
    config = small_config(policy_type)
    task = SyntheticTask()
    generator = torch.Generator().manual_seed(0)
    policy = make_policy(config, FEATURES, task.stats(config, generator))
    assert isinstance(policy, get_policy_class(policy_type))
    loss, metrics = policy(task.batch(config, 8, generator))
    assert loss.shape == () and math.isfinite(loss.item())
    assert metrics and all(isinstance(value, float) for value in metrics.values())
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in policy.parameters() if p.requires_grad)


@pytest.mark.parametrize("policy_type", POLICY_TYPES)
def test_select_action_returns_one_unnormalised_action_per_batch_element(policy_type: str) -> None:
    config = small_config(policy_type)
    task = SyntheticTask()
    generator = torch.Generator().manual_seed(0)
    policy = make_policy(config, FEATURES, task.stats(config, generator)).eval()
    policy.reset()
    for _ in range(6):
        observation = {k: v[:, -1] for k, v in task.batch(config, 3, generator).items() if not k.startswith("action")}
        action = policy.select_action(observation)
        assert action.shape == (3, FEATURES.action_dim)
        assert torch.isfinite(action).all()


# (policy, steps, lr, metric that must fall): diffusion's loss is its only metric; ACT's l1 is checked on its own so
# the fall is not just the KL term collapsing.
LEARNING_CASES = [("mlp", 100, 3e-3, "l1"), ("act", 150, 3e-3, "l1_loss"), ("diffusion", 100, 3e-3, "mse")]


@pytest.mark.parametrize(("policy_type", "steps", "lr", "metric"), LEARNING_CASES)
def test_loss_falls_at_least_five_fold_on_a_learnable_task(
    policy_type: str, steps: int, lr: float, metric: str
) -> None:
    torch.manual_seed(0)
    config = small_config(policy_type)
    task = SyntheticTask()
    generator = torch.Generator().manual_seed(1)
    policy = make_policy(config, FEATURES, task.stats(config, generator))
    optimizer = torch.optim.Adam(policy.parameters(), lr=lr)
    losses, tracked = [], []
    for _ in range(steps):
        loss, metrics = policy(task.batch(config, 32, generator))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        tracked.append(metrics[metric])
    for series in (losses, tracked):
        first, last = sum(series[:5]) / 5, sum(series[-10:]) / 10
        assert last * 5 <= first, f"{policy_type}: loss went from {first:.4f} to {last:.4f}"


@pytest.mark.parametrize("policy_type", POLICY_TYPES)
def test_a_policy_rebuilt_without_stats_and_loaded_from_the_state_dict_acts_identically(policy_type: str) -> None:
    config = small_config(policy_type)
    task = SyntheticTask()
    generator = torch.Generator().manual_seed(0)
    trained = make_policy(config, FEATURES, task.stats(config, generator))
    # Move the weights off their initial values so the comparison is not between two fresh initialisations.
    optimizer = torch.optim.Adam(trained.parameters(), lr=1e-2)
    loss, _ = trained(task.batch(config, 16, generator))
    loss.backward()
    optimizer.step()

    rebuilt = make_policy(config, FEATURES, None)
    observation = {k: v[:, -1] for k, v in task.batch(config, 4, generator).items() if not k.startswith("action")}
    with pytest.raises(RuntimeError, match="never set"):
        rebuilt.select_action(observation)
    rebuilt.load_state_dict(trained.state_dict())

    outputs = []
    for policy in (trained, rebuilt):
        policy.eval()
        policy.reset()
        torch.manual_seed(123)  # diffusion samples noise from the global generator
        outputs.append(torch.stack([policy.select_action(observation) for _ in range(3)]))
    torch.testing.assert_close(outputs[0], outputs[1], rtol=0, atol=0)
