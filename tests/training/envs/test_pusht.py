"""PushT through the real gym-pusht package: LeRobot's features and success definition, and a policy trained on a
dataset in LeRobot's PushT layout (written from the scripted controller) does better than random actions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.envs import make_env
from training.envs.pusht import IMAGE_KEY, STATE_KEY
from training.evaluate import evaluate
from training.spec import TrainSpec
from training.trainer import run

EVAL_EPISODES = 8


class RandomPolicy(torch.nn.Module):
    """Uniform targets over PushT's workspace, behind the policy inference API."""

    def __init__(self, features) -> None:
        super().__init__()
        self.features = features
        self.generator = torch.Generator().manual_seed(0)

    def reset(self) -> None:
        pass

    def select_action(self, observation):
        batch = observation[STATE_KEY].shape[0]
        return torch.rand(batch, 2, generator=self.generator) * 512


def test_pusht_maps_to_lerobot_features():
    env = make_env("pusht", 2)
    observation = env.reset([1, 2])
    assert observation[IMAGE_KEY].shape == (2, 96, 96, 3) and observation[IMAGE_KEY].dtype == np.uint8
    assert observation[STATE_KEY].shape == (2, 2) and observation[STATE_KEY].dtype == np.float32
    assert env.image_features == {IMAGE_KEY: (3, 96, 96)} and env.fps == 10 and env.max_episode_steps == 300
    _, reward, success, done = env.step(np.full((2, 2), 256.0))
    assert reward.shape == (2,) and reward.min() >= 0.0 and reward.max() <= 1.0
    assert not success.any() and not done.any()


@pytest.mark.slow
def test_trained_policy_beats_random_on_pusht(tmp_path, dataset_cache):
    torch.set_num_threads(1)
    spec = TrainSpec.model_validate(
        {
            "policy": {
                "type": "act",
                "vision_backbone": "small_cnn",
                "image_size": [32, 32],
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
            },
            "dataset": {"uri": "builtin://pusht?episodes=24&seed=0", "val_fraction": 0.0},
            "training": {"steps": 600, "batch_size": 64, "log_every": 100, "checkpoint_every": 100_000, "seed": 3},
            "eval": {"env": "pusht", "episodes": EVAL_EPISODES, "videos": 1},
        }
    )
    result = run(spec, tmp_path / "run", cache_dir=dataset_cache)
    assert result.eval is not None and result.videos
    from training.checkpoint import load_policy

    random_eval = evaluate(RandomPolicy(load_policy(tmp_path / "run").features), "pusht", EVAL_EPISODES)
    assert result.eval["avg_max_reward"] >= random_eval["avg_max_reward"] + 0.1, (random_eval, result.eval)
