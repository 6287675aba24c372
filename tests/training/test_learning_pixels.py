"""Learning gates from pixels only: push2d rendered at 32x32 (no state vector), the small CNN, a few hundred CPU
steps. Each trained policy, reloaded from its checkpoint, must beat the same seeded initialisation evaluated
untrained by a margin. Margins, not exact numbers; the longer figures are in bench/policy_quality.py."""

import pytest
import torch

from training.checkpoint import load_policy
from training.evaluate import evaluate
from training.reporter import NullReporter
from training.spec import TrainSpec
from training.trainer import run

EVAL_EPISODES = 20
PIXELS_URI = "builtin://push2d?episodes=100&seed=0&obs_type=pixels&image_size=32"


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)  # the CI cores are shared


class _StopAtOnce(NullReporter):
    def should_stop(self):
        return True


def _spec(policy: dict, steps: int) -> TrainSpec:
    return TrainSpec.model_validate(
        {
            "policy": {"vision_backbone": "small_cnn", **policy},
            "dataset": {"uri": PIXELS_URI, "val_fraction": 0.0},
            "training": {"steps": steps, "batch_size": 64, "log_every": 50, "checkpoint_every": 100_000, "seed": 7},
            "eval": {"env": "push2d", "episodes": EVAL_EPISODES, "videos": 1},
        }
    )


def _untrained_and_trained(spec: TrainSpec, tmp_path, dataset_cache) -> tuple[dict, dict]:
    run(spec, tmp_path / "untrained", _StopAtOnce(), cache_dir=dataset_cache)
    untrained = evaluate(load_policy(tmp_path / "untrained"), "push2d", EVAL_EPISODES)
    result = run(spec, tmp_path / "trained", cache_dir=dataset_cache)
    assert result.eval is not None and result.eval["n_episodes"] == EVAL_EPISODES
    assert result.videos == [f"eval/videos/step_{spec.training.steps:06d}/episode_0.webm"]
    assert (tmp_path / "trained" / result.videos[0]).stat().st_size > 0
    return untrained, result.eval


@pytest.mark.slow
def test_mlp_learns_push2d_from_pixels(tmp_path, dataset_cache):
    spec = _spec({"type": "mlp", "hidden_dims": [256, 256]}, steps=600)
    untrained, trained = _untrained_and_trained(spec, tmp_path, dataset_cache)
    assert trained["avg_max_reward"] >= untrained["avg_max_reward"] + 0.15, (untrained, trained)


@pytest.mark.slow
def test_act_learns_push2d_from_pixels(tmp_path, dataset_cache):
    policy = {
        "type": "act",
        "chunk_size": 8,
        "n_action_steps": 1,
        "dim_model": 64,
        "n_heads": 4,
        "dim_feedforward": 128,
        "n_encoder_layers": 1,
        "n_decoder_layers": 1,
        "n_vae_encoder_layers": 1,
        "latent_dim": 8,
        "kl_weight": 1.0,
        "dropout": 0.0,
        "optimizer_lr": 1e-3,
    }
    untrained, trained = _untrained_and_trained(_spec(policy, steps=500), tmp_path, dataset_cache)
    assert trained["pc_success"] >= untrained["pc_success"] + 10.0, (untrained, trained)
    assert trained["avg_max_reward"] >= untrained["avg_max_reward"] + 0.15, (untrained, trained)


@pytest.mark.slow
def test_diffusion_learns_push2d_from_pixels(tmp_path, dataset_cache):
    policy = {
        "type": "diffusion",
        "down_dims": [32, 64],
        "diffusion_step_embed_dim": 32,
        "n_obs_steps": 1,
        "horizon": 4,
        "n_action_steps": 1,
        "num_inference_steps": 5,
        "optimizer_lr": 1e-3,
        "scheduler_warmup_steps": 50,
    }
    untrained, trained = _untrained_and_trained(_spec(policy, steps=600), tmp_path, dataset_cache)
    assert trained["avg_max_reward"] >= untrained["avg_max_reward"] + 0.1, (untrained, trained)
