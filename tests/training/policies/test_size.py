"""training.policies.size: a policy is counted on the meta device, exactly and without allocating."""

from __future__ import annotations

import pytest

from tests.training.helpers import PUSH2D_FEATURES, unit_stats
from training.policies import make_policy
from training.policies.size import count_parameters, frame_bytes, size_problems
from training.spec import Limits, TrainSpec


@pytest.mark.parametrize(
    "policy",
    [
        {"type": "mlp", "hidden_dims": [32, 16]},
        {
            "type": "act",
            "dim_model": 32,
            "n_heads": 4,
            "dim_feedforward": 64,
            "chunk_size": 8,
            "n_action_steps": 8,
            "n_encoder_layers": 1,
            "n_vae_encoder_layers": 1,
        },
        {"type": "diffusion", "down_dims": [16, 32], "n_groups": 8, "horizon": 8, "n_action_steps": 4},
    ],
)
def test_the_count_equals_the_built_policys(policy: dict) -> None:
    spec = TrainSpec.model_validate({"policy": policy, "dataset": {"uri": "builtin://push2d"}})
    built = make_policy(spec.policy, PUSH2D_FEATURES, unit_stats())
    assert count_parameters(spec.policy, PUSH2D_FEATURES) == sum(p.numel() for p in built.parameters())


def test_a_trillion_parameter_request_is_counted_not_allocated() -> None:
    spec = TrainSpec.model_validate(
        {
            "policy": {"type": "mlp", "hidden_dims": [10**12]},
            "dataset": {"uri": "builtin://push2d"},
            "training": {"batch_size": 4096},
        }
    )
    problems = size_problems(spec, Limits(max_parameters=10**8, max_batch_bytes=4096 * 8), PUSH2D_FEATURES)
    assert len(problems) == 2
    assert problems[0].startswith("the policy has 15,000,000,000,002 parameters")
    assert problems[1].startswith(f"training.batch_size 4096 x {frame_bytes(PUSH2D_FEATURES)} bytes per frame")
