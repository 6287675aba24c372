"""Learning gates on push2d (CPU, seconds to a minute each): a trained policy, reloaded from its checkpoint on disk,
must beat the untrained one by a margin over seeded evaluation episodes. Margins, not exact numbers."""

import json

import pytest
import torch

from tests.training.helpers import TINY_ACT
from training.checkpoint import load_policy
from training.evaluate import evaluate
from training.reporter import NullReporter
from training.spec import TrainSpec
from training.trainer import METRICS_FILE, run

EVAL_EPISODES = 50


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)  # the CI cores are shared


class _StopAtOnce(NullReporter):
    def should_stop(self):
        return True


def _spec(policy: dict, steps: int, batch_size: int, log_every: int) -> TrainSpec:
    return TrainSpec.model_validate(
        {
            "policy": policy,
            "dataset": {"uri": "builtin://push2d?episodes=200&seed=0", "val_fraction": 0.0},
            "training": {
                "steps": steps,
                "batch_size": batch_size,
                "log_every": log_every,
                "checkpoint_every": 100_000,
                "device": "cpu",
                "seed": 7,
            },
            "eval": {"env": "push2d", "episodes": EVAL_EPISODES},
        }
    )


def _untrained_eval(spec: TrainSpec, tmp_path, dataset_cache) -> dict:
    """Evaluation of the same seeded initialisation, saved at step 0 and reloaded as the trained one is."""
    run(spec, tmp_path / "untrained", _StopAtOnce(), cache_dir=dataset_cache)
    policy = load_policy(tmp_path / "untrained")
    return evaluate(policy, "push2d", EVAL_EPISODES)


def _train(spec: TrainSpec, tmp_path, dataset_cache):
    result = run(spec, tmp_path / "trained", cache_dir=dataset_cache)
    rows = [json.loads(line) for line in (tmp_path / "trained" / METRICS_FILE).read_text().splitlines()]
    losses = [row["train/loss"] for row in rows if "train/loss" in row]
    return result, losses


@pytest.mark.slow
def test_mlp_learns_push2d(tmp_path, dataset_cache):
    spec = _spec(
        {"type": "mlp", "hidden_dims": [256, 256], "optimizer_lr": 2e-3, "scheduler_warmup_steps": 50},
        steps=2000,
        batch_size=256,
        log_every=100,
    )
    untrained = _untrained_eval(spec, tmp_path, dataset_cache)["pc_success"]
    result, _ = _train(spec, tmp_path, dataset_cache)
    success = result.eval["pc_success"]  # percent
    assert result.eval["n_episodes"] == EVAL_EPISODES
    assert success >= 80.0, result.eval
    assert success >= untrained + 50.0, (untrained, success)


@pytest.mark.slow
def test_act_learns_push2d(tmp_path, dataset_cache):
    spec = _spec(
        {
            **TINY_ACT,
            "scheduler_warmup_steps": 20,
            "scheduler": "cosine",  # the schedule this gate was measured with (ACT's preset is constant now)
        },
        steps=300,
        batch_size=64,
        log_every=20,
    )
    untrained = _untrained_eval(spec, tmp_path, dataset_cache)["pc_success"]
    result, losses = _train(spec, tmp_path, dataset_cache)
    assert losses[0] >= 5 * losses[-1], losses
    assert result.eval["pc_success"] > untrained, (untrained, result.eval)


@pytest.mark.slow
# ~100 s of CPU training on a quiet machine: the suite's 300 s hang guard is too close once the CPU is shared
@pytest.mark.timeout(1200)
def test_diffusion_learns_push2d(tmp_path, dataset_cache):
    # A tiny UNet over a short horizon, re-planning every step (push2d is reactive), evaluated with its EMA weights.
    # A few hundred CPU steps make it push the block most of the way; finishing within tolerance comes later (the
    # reference's tiny DDPM head reached 18% after 4k steps), so success is gated on beating the untrained policy and
    # the progress reward on a margin.
    spec = _spec(
        {
            "type": "diffusion",
            "down_dims": [32, 64],
            "diffusion_step_embed_dim": 32,
            "n_groups": 8,
            "n_obs_steps": 1,
            "horizon": 4,
            "n_action_steps": 1,
            "num_inference_steps": 5,
            "optimizer_lr": 1e-3,
            "scheduler_warmup_steps": 50,
        },
        steps=1000,
        batch_size=128,
        log_every=50,
    )
    untrained = _untrained_eval(spec, tmp_path, dataset_cache)
    result, losses = _train(spec, tmp_path, dataset_cache)
    assert losses[0] >= 5 * losses[-1], losses
    assert result.eval["pc_success"] > untrained["pc_success"], (untrained, result.eval)
    assert result.eval["avg_max_reward"] >= untrained["avg_max_reward"] + 0.2, (untrained, result.eval)
