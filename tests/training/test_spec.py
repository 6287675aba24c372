"""training.spec: every float finite, dataset URIs structurally plain, and the operator's limits on what a spec
alone shows."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from training.spec import Limits, TrainSpec, checkpoint_saves, eval_episodes, limit_problems


def spec(**sections) -> TrainSpec:
    return TrainSpec.model_validate({"policy": {"type": "mlp"}, "dataset": {"uri": "builtin://push2d"}, **sections})


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('{"training": {"grad_clip": Infinity}}', "training.grad_clip"),
        ('{"policy": {"type": "act", "kl_weight": NaN}}', "policy.act.kl_weight"),
        ('{"policy": {"type": "diffusion", "ema_power": Infinity}}', "policy.diffusion.ema_power"),
        ('{"policy": {"type": "mlp", "optimizer_betas": [0.9, -Infinity]}}', "policy.mlp.optimizer_betas.1"),
        ('{"policy": {"type": "act", "temporal_ensemble_coeff": "NaN"}}', "policy.act.temporal_ensemble_coeff"),
    ],
)
def test_non_finite_floats_are_refused_naming_the_field(body: str, field: str) -> None:
    data = {"policy": {"type": "mlp"}, "dataset": {"uri": "builtin://push2d"}, **json.loads(body)}
    with pytest.raises(ValidationError) as refused:
        TrainSpec.model_validate(data)
    assert field in {".".join(str(part) for part in error["loc"]) for error in refused.value.errors()}


@pytest.mark.parametrize(
    "uri",
    [
        "s3://bucket/../../../keys",
        "s3://bucket/%2e%2e/%2E%2E/keys",
        "s3://bucket/a//b",
        "file:///data/../etc",
        "file:///data/%2e%2e/etc",
        "file:///data/a\\..\\b",
        "hf://org/name@../../refs",
        "hf://org/name@a//b",
        "dataset://ds_../../keys",
        "dataset://DS_0123456789ABCDEFGHJKMNPQRS",
    ],
)
def test_uris_that_could_climb_are_refused_at_validation(uri: str) -> None:
    with pytest.raises(ValidationError, match="dataset.uri"):
        spec(dataset={"uri": uri})


def test_plain_uris_pass() -> None:
    for uri in (
        "dataset://ds_0123456789abcdefghjkmnpqrs",
        "s3://bucket/sets/push/",
        "file:///data/sets/push",
        "hf://org/name@refs/pr/1",
    ):
        assert spec(dataset={"uri": uri}).dataset.uri == uri


def test_limits_name_each_field_over_them() -> None:
    limits = Limits(max_steps=1000, max_eval_episodes=100, max_builtin_episodes=500, max_checkpoint_saves=11)
    assert limit_problems(spec(training={"steps": 1000, "checkpoint_every": 100}), limits) == []
    problems = limit_problems(
        spec(
            dataset={"uri": "builtin://push2d?episodes=100000"},
            training={"steps": 2_000_000, "checkpoint_every": 1},
            eval={"env": "push2d", "episodes": 50, "every": 10},
        ),
        limits,
    )
    assert [problem.split(" ", 1)[0] for problem in problems] == [
        "training.steps",
        "eval.episodes",
        "dataset.uri",
        "training.checkpoint_every",
    ]
    assert "checkpoint_every >= 200000" in problems[3]


def test_evaluation_and_checkpoint_counts() -> None:
    assert eval_episodes(spec(eval={"env": None, "episodes": 50})) == 0
    assert eval_episodes(spec(training={"steps": 100}, eval={"env": "push2d", "episodes": 5, "every": 30})) == 20
    assert checkpoint_saves(spec(training={"steps": 100, "checkpoint_every": 30})) == 4
