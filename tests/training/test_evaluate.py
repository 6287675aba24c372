import random

import numpy as np
import pytest
import torch

from tests.training.helpers import PUSH2D_FEATURES, ExpertPolicy, unit_stats
from training.evaluate import evaluate, mean_interval, student_t_975, wilson_interval
from training.policies import make_policy
from training.policies.mlp.configuration_mlp import MlpConfig


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.mark.parametrize(
    ("successes", "trials", "low", "high"),
    [(8, 10, 0.4902, 0.9433), (0, 10, 0.0, 0.2775), (10, 10, 0.7225, 1.0), (25, 50, 0.3664, 0.6336)],
)
def test_wilson_interval_matches_known_values(successes, trials, low, high):
    got_low, got_high = wilson_interval(successes, trials)
    assert got_low == pytest.approx(low, abs=1e-4)
    assert got_high == pytest.approx(high, abs=1e-4)


@pytest.mark.parametrize(("df", "quantile"), [(1, 12.706), (4, 2.776), (5, 2.5706), (9, 2.2622), (19, 2.0930),
                                              (29, 2.0452), (99, 1.9842), (10_000, 1.9602)])  # fmt: skip
def test_student_t_quantile_matches_tables(df, quantile):
    assert student_t_975(df) == pytest.approx(quantile, abs=3e-3)


def test_mean_interval_is_the_t_interval_of_the_mean():
    mean, low, high = mean_interval([0.1, 0.3, 0.2, 0.6])
    half = 3.182 * float(np.std([0.1, 0.3, 0.2, 0.6], ddof=1)) / 2  # t(0.975, 3) * s / sqrt(4)
    assert mean == pytest.approx(0.3) and low == pytest.approx(0.3 - half) and high == pytest.approx(0.3 + half)
    assert mean_interval([0.5]) == (0.5, 0.5, 0.5)
    with pytest.raises(ValueError):
        mean_interval([])


def test_scripted_expert_succeeds_and_results_carry_lerobot_fields():
    results = evaluate(ExpertPolicy(), "push2d", 20, batch_size=8)
    assert results["pc_success"] == 100.0
    assert results["pc_success_ci_low"] < 100.0 == results["pc_success_ci_high"]
    assert results["avg_max_reward"] == 1.0
    assert results["n_episodes"] == 20
    assert [e["episode_ix"] for e in results["per_episode"]] == list(range(20))
    assert len({e["seed"] for e in results["per_episode"]}) == 20


def test_untrained_policy_fails_and_evaluation_is_reproducible_without_touching_global_rng():
    torch.manual_seed(0)
    policy = make_policy(MlpConfig(), PUSH2D_FEATURES, unit_stats())
    torch.manual_seed(123)
    random.seed(4)
    np.random.seed(5)
    before = (torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy())
    first = evaluate(policy, "push2d", 10)
    after = (torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy())
    second = evaluate(policy, "push2d", 10)
    assert first["pc_success"] < 20.0
    assert torch.equal(before[0], after[0]) and before[1] == after[1] and np.array_equal(before[2], after[2])
    assert first["per_episode"] == second["per_episode"]
    assert policy.training  # evaluate restores the mode it found
