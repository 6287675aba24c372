import numpy as np
import pytest

from training.envs import DEMO_SEED_LIMIT, ENV_NAMES, EVAL_SEED_BASE, make_env, push2d
from training.errors import EnvironmentError_


def run_expert(seeds: list[int], noise: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    env = make_env("push2d", len(seeds))
    observation = env.reset(seeds)
    rng = np.random.default_rng(0)
    max_reward = np.zeros(len(seeds))
    for _ in range(env.max_episode_steps):
        action = push2d.expert_actions(observation) + rng.normal(0.0, noise, (len(seeds), 2))
        observation, reward, success, done = env.step(action)
        max_reward = np.maximum(max_reward, reward)
        if done.all():
            break
    assert done.all()
    return success, max_reward


def test_expert_solves_at_least_95_percent_of_50_eval_episodes():
    success, max_reward = run_expert(push2d.eval_seeds(50))
    assert success.mean() >= 0.95
    assert np.all(max_reward[success] == 1.0)


def test_noisy_expert_still_solves_most_episodes():
    success, _ = run_expert(push2d.eval_seeds(50), noise=push2d.DEFAULT_DEMO_NOISE)
    assert success.mean() >= 0.9


def test_a_policy_that_stands_still_neither_succeeds_nor_scores():
    env = make_env("push2d", 20)
    observation = env.reset(push2d.eval_seeds(20))
    for _ in range(env.max_episode_steps):
        observation, reward, success, done = env.step(observation["observation.state"])
    assert done.all() and not success.any()
    assert np.all(reward == 0.0)


def test_observation_and_feature_shapes_match_the_declared_features():
    env = make_env("push2d", 3)
    observation = env.reset([1, 2, 3])
    assert env.observation_features == {"observation.state": 2, "observation.environment_state": 4}
    for key, dim in env.observation_features.items():
        assert observation[key].shape == (3, dim) and observation[key].dtype == np.float32
    observation, reward, success, done = env.step(np.zeros((3, env.action_dim), np.float32))
    assert reward.shape == success.shape == done.shape == (3,)
    assert success.dtype == bool and done.dtype == bool
    assert np.all((reward >= 0) & (reward <= 1))


def test_same_seeds_give_identical_episodes_whatever_the_batch():
    def trajectory(seeds):
        env = make_env("push2d", len(seeds))
        observation = env.reset(seeds)
        states = []
        for _ in range(30):
            observation, *_ = env.step(push2d.expert_actions(observation))
            states.append(observation["observation.environment_state"])
        return np.stack(states, axis=1)

    together = trajectory([7, 8, 9])
    alone = trajectory([8])
    assert np.array_equal(together[1], alone[0])
    assert not np.array_equal(together[0], together[1])
    assert np.array_equal(trajectory([7, 8, 9]), together)


def test_the_pusher_moves_at_bounded_speed_toward_its_target():
    env = make_env("push2d", 1)
    observation = env.reset([5])
    start = observation["observation.state"][0].astype(np.float64)
    far = np.clip(-np.sign(start), -1, 1)[None].astype(np.float32)
    observation, *_ = env.step(far)
    moved = np.linalg.norm(observation["observation.state"][0] - start)
    assert moved == pytest.approx(push2d.MAX_SPEED, abs=1e-5)


def test_pushing_moves_the_block_and_never_overlaps_it():
    env = make_env("push2d", 50)
    observation = env.reset(push2d.eval_seeds(50))
    start_block = observation["observation.environment_state"][:, :2].copy()
    for _ in range(40):
        # Drive every pusher straight through the block's centre.
        observation, *_ = env.step(observation["observation.environment_state"][:, :2])
        gap = np.linalg.norm(
            observation["observation.environment_state"][:, :2] - observation["observation.state"], axis=1
        )
        assert np.all(gap >= push2d.CONTACT_DISTANCE - 1e-5)
    assert np.all(np.linalg.norm(observation["observation.environment_state"][:, :2] - start_block, axis=1) > 0.05)


def test_a_finished_environment_stays_frozen():
    env = make_env("push2d", 1)
    observation = env.reset([11])
    for _ in range(env.max_episode_steps):
        observation, reward, success, done = env.step(push2d.expert_actions(observation))
        if done[0]:
            break
    assert success[0]
    frozen = {k: v.copy() for k, v in observation.items()}
    again, reward_again, success_again, done_again = env.step(np.array([[1.0, 1.0]], np.float32))
    assert all(np.array_equal(again[k], frozen[k]) for k in frozen)
    assert reward_again[0] == reward[0] and success_again[0] and done_again[0]


def test_demonstration_and_evaluation_seeds_never_overlap():
    largest_demo = push2d.demo_seed(push2d.MAX_DATASET_SEED - 1, push2d.DEMO_SEED_BLOCK - 1)
    assert largest_demo < DEMO_SEED_LIMIT <= EVAL_SEED_BASE
    assert min(push2d.eval_seeds(10_000)) == EVAL_SEED_BASE
    with pytest.raises(ValueError):
        push2d.demo_seed(push2d.MAX_DATASET_SEED, 0)
    with pytest.raises(ValueError):
        push2d.demo_seed(0, push2d.DEMO_SEED_BLOCK)


def test_demonstrations_are_successful_deterministic_and_well_formed():
    episodes = push2d.generate_demonstrations(12, seed=3)
    assert len(episodes) == 12
    for episode in episodes:
        length = len(episode["action"])
        assert 1 <= length <= push2d.MAX_EPISODE_STEPS
        assert episode["observation.state"].shape == (length, 2)
        assert episode["observation.environment_state"].shape == (length, 4)
        assert episode["action"].dtype == np.float32
        assert episode["next.success"][-1] and not episode["next.success"][:-1].any()
        assert episode["next.done"][-1] and not episode["next.done"][:-1].any()
    again = push2d.generate_demonstrations(12, seed=3)
    assert all(np.array_equal(a["action"], b["action"]) for a, b in zip(episodes, again, strict=True))
    other = push2d.generate_demonstrations(12, seed=4)
    assert not np.array_equal(episodes[0]["observation.state"], other[0]["observation.state"])


def test_noise_covers_states_the_clean_expert_never_visits():
    clean = push2d.generate_demonstrations(20, seed=0, noise=0.0)
    noisy = push2d.generate_demonstrations(20, seed=0)
    assert sum(len(e["action"]) for e in noisy) > sum(len(e["action"]) for e in clean)


def test_unknown_environment_names_the_allowed_ones():
    with pytest.raises(EnvironmentError_, match="allowed: push2d, pusht"):
        make_env("aloha", 1)
    assert ENV_NAMES == ("push2d", "pusht")
