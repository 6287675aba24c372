"""PushT through the real gym-pusht package: LeRobot's features and success definition, and a policy trained on a
dataset in LeRobot's PushT layout (written from the scripted controller) does better than random actions."""

from __future__ import annotations

import numpy as np
import torch

from training.checkpoint import load_policy
from training.envs import make_env
from training.envs.pusht import IMAGE_KEY, STATE_KEY
from training.evaluate import evaluate
from training.spec import TrainSpec
from training.trainer import run


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


def test_pusht_trains_and_evaluates_end_to_end(tmp_path, dataset_cache):
    """A dataset in LeRobot's PushT layout (the scripted controller's), trained briefly and evaluated in gym-pusht
    with the package's success; whether training beats random actions is measured by bench/policy_quality.py."""
    torch.set_num_threads(1)
    spec = TrainSpec.model_validate(
        {
            "policy": {"type": "mlp", "vision_backbone": "small_cnn", "image_size": [32, 32], "hidden_dims": [64]},
            "dataset": {"uri": "builtin://pusht?episodes=2&seed=0", "val_fraction": 0.0},
            "training": {"steps": 20, "batch_size": 16, "log_every": 10, "checkpoint_every": 100_000, "seed": 3},
            "eval": {"env": "pusht", "episodes": 2, "videos": 1},
        }
    )
    result = run(spec, tmp_path / "run", cache_dir=dataset_cache)
    assert result.eval is not None and result.eval["n_episodes"] == 2
    assert 0.0 <= result.eval["avg_max_reward"] <= 1.0
    assert result.videos == ["eval/videos/step_000020/episode_0.webm"]
    policy = load_policy(tmp_path / "run")
    assert policy.features.images == {IMAGE_KEY: (3, 96, 96)}
    random_eval = evaluate(RandomPolicy(policy.features), "pusht", 2)
    assert random_eval["n_episodes"] == 2 and not random_eval["videos"]
