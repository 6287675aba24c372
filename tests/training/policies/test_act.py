from __future__ import annotations

import math

import pytest
import torch

from tests.training.policies.synthetic import FEATURES, SyntheticTask, small_config
from training.policies import make_policy
from training.policies.act.modeling_act import ActPolicy, ActTemporalEnsembler


def _policy(**overrides) -> tuple[ActPolicy, SyntheticTask, torch.Generator]:
    config = small_config("act", **overrides)
    task = SyntheticTask()
    generator = torch.Generator().manual_seed(0)
    policy = make_policy(config, FEATURES, task.stats(config, generator))
    assert isinstance(policy, ActPolicy)
    return policy, task, generator


@pytest.mark.parametrize("use_vae", [True, False])
def test_actions_at_padded_chunk_steps_do_not_change_the_loss_but_valid_ones_do(use_vae: bool) -> None:
    policy, task, generator = _policy(use_vae=use_vae, chunk_size=6, n_action_steps=6)
    batch = task.batch(policy.config, 4, generator)
    batch["action_is_pad"][:, 4:] = True
    batch["action_is_pad"][0, 2:] = True

    def loss_of(actions: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        torch.manual_seed(7)  # same reparameterisation noise in every call
        return policy({**batch, "action": actions})

    base_loss, base_metrics = loss_of(batch["action"])
    padded_changed = batch["action"].clone()
    padded_changed[:, 4:] += 100.0
    padded_changed[0, 2:] -= 50.0
    changed_loss, changed_metrics = loss_of(padded_changed)
    assert changed_loss.item() == base_loss.item()
    assert changed_metrics == base_metrics
    valid_changed = batch["action"].clone()
    valid_changed[1, 1] += 1.0
    assert loss_of(valid_changed)[0].item() != base_loss.item()


def test_l1_is_the_mean_over_valid_entries_only() -> None:
    policy, task, generator = _policy(use_vae=False)
    batch = task.batch(policy.config, 2, generator)
    batch["action_is_pad"][:, 3:] = True
    _, metrics = policy(batch)
    normalized = policy.normalizer.normalize("action", batch["action"])
    with torch.no_grad():
        observation = {k: batch[k][:, -1] for k in FEATURES.observation}
        predicted = policy.normalizer.normalize("action", policy.predict_action_chunk(observation))
    expected = (predicted - normalized)[:, :3].abs().mean().item()
    assert metrics["l1_loss"] == pytest.approx(expected, rel=1e-4)
    assert metrics["kld_loss"] == 0.0


def test_the_oldest_prediction_has_weight_one_and_newer_ones_exp_minus_k_i() -> None:
    coeff, chunk_size = 0.5, 3
    ensembler = ActTemporalEnsembler(coeff, chunk_size)
    values = [1.0, 10.0, 100.0, 1000.0, 10000.0]
    outputs = [ensembler.update(torch.full((2, chunk_size, 1), v)) for v in values]

    w = [math.exp(-coeff * i) for i in range(chunk_size)]
    expected = [
        values[0],
        (values[0] * w[0] + values[1] * w[1]) / (w[0] + w[1]),
        (values[0] * w[0] + values[1] * w[1] + values[2] * w[2]) / sum(w),
        (values[1] * w[0] + values[2] * w[1] + values[3] * w[2]) / sum(w),
        (values[2] * w[0] + values[3] * w[1] + values[4] * w[2]) / sum(w),
    ]
    for output, value in zip(outputs, expected, strict=True):
        assert output.shape == (2, 1)
        torch.testing.assert_close(output, torch.full((2, 1), value), rtol=1e-5, atol=0)


def test_ensembling_averages_each_step_over_the_chunks_that_predicted_it() -> None:
    ensembler = ActTemporalEnsembler(0.0, 2)  # k = 0: plain average
    first = torch.tensor([[[1.0], [2.0]]])
    second = torch.tensor([[[4.0], [8.0]]])
    assert ensembler.update(first).item() == 1.0
    # Step 1 was predicted as 2 (by the first chunk, its index 1) and 4 (by the second, its index 0).
    assert ensembler.update(second).item() == 3.0
    ensembler.reset()
    assert ensembler.update(second).item() == 4.0


def test_a_policy_with_temporal_ensembling_queries_every_step_and_ensembles() -> None:
    policy, task, generator = _policy(temporal_ensemble_coeff=0.01, n_action_steps=1)
    policy.eval()
    policy.reset()
    observations = [{k: torch.randn(2, d, generator=generator) for k, d in FEATURES.observation.items()} for _ in "ab"]
    chunks = [policy.predict_action_chunk(o) for o in observations]
    reference = ActTemporalEnsembler(0.01, policy.config.chunk_size)
    for observation, chunk in zip(observations, chunks, strict=True):
        torch.testing.assert_close(policy.select_action(observation), reference.update(chunk))


def test_chunked_execution_queries_exactly_every_n_action_steps_and_runs_the_chunk_in_order() -> None:
    policy, task, generator = _policy(chunk_size=5, n_action_steps=3)
    policy.eval()
    real_predict = policy.predict_action_chunk
    chunks: list[torch.Tensor] = []

    def recording_predict(observation: dict[str, torch.Tensor]) -> torch.Tensor:
        chunks.append(real_predict(observation))
        return chunks[-1]

    policy.predict_action_chunk = recording_predict  # instance attribute: records calls to the real method
    policy.reset()
    queried_at = []
    for step in range(10):
        before = len(chunks)
        observation = {k: torch.randn(2, d, generator=generator) for k, d in FEATURES.observation.items()}
        action = policy.select_action(observation)
        if len(chunks) > before:
            queried_at.append(step)
        torch.testing.assert_close(action, chunks[-1][:, step % 3])
    assert queried_at == [0, 3, 6, 9]
    policy.reset()
    policy.select_action(observation)
    assert len(chunks) == 5  # reset empties the queue, so the next step queries again


def test_inference_uses_z_zero_and_is_deterministic_in_eval_mode() -> None:
    policy, _, generator = _policy()
    policy.eval()
    observation = {k: torch.randn(3, d, generator=generator) for k, d in FEATURES.observation.items()}
    torch.testing.assert_close(policy.predict_action_chunk(observation), policy.predict_action_chunk(observation))
    assert policy.predict_action_chunk(observation).shape == (3, policy.config.chunk_size, FEATURES.action_dim)
