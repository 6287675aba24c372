"""PushT from the `gym-pusht` package (gym_pusht/PushT-v0, the benchmark of the Diffusion Policy paper and LeRobot),
behind the evaluator's VectorEnv and mapped to LeRobot's PushT features, in either of LeRobot's two layouts:

- observation.image:             (pixels, lerobot/pusht) the env's `pixels` (96x96 RGB by default), uint8 (H, W, 3)
- observation.environment_state: (keypoints, lerobot/pusht_keypoints) the env's `environment_state`: the xy of the
                                 T-block's 8 keypoints, float32[16] in [0, 512]
- observation.state:             the env's `agent_pos`, the agent's xy in the 512x512 workspace, float32[2]
- action:                        the agent's target xy, float32[2] in [0, 512]
- success:                       the package's `info["is_success"]` (T-block coverage of the goal above its threshold,
                                 95%); reward is the package's (coverage / threshold, clipped to 1), so avg_max_reward
                                 is LeRobot's "max overlap" metric.

The env renders (obs_type `pixels_agent_pos`) when it is made with an image size, and observes keypoints (obs_type
`environment_state_agent_pos`) otherwise; gym-pusht draws a 512x512 frame for every rendered step, which makes the
keypoint env about ten times faster. 10 fps and 300 steps per episode, as LeRobot's `pusht` env config. A scripted
controller (privileged: it reads the block's pose) writes demonstrations in either layout, so the whole pipeline runs
without LeRobot's human datasets.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from training.errors import EnvironmentError_

FPS = 10
MAX_EPISODE_STEPS = 300
IMAGE_KEY = "observation.image"
STATE_KEY = "observation.state"
ENV_STATE_KEY = "observation.environment_state"
KEYPOINTS_DIM = 16
IMAGE_SIZE = 96
# gym-pusht's obs_type names; the first is LeRobot's PushT layout (lerobot/pusht), the second lerobot/pusht_keypoints.
PIXELS, KEYPOINTS = "pixels_agent_pos", "environment_state_agent_pos"
OBS_TYPES = (PIXELS, KEYPOINTS)
ACTION_LOW, ACTION_HIGH = 0.0, 512.0
TASK = "Push the T-shaped block onto the T-shaped target."
GOAL_XY = np.array([256.0, 256.0])  # gym-pusht's fixed goal pose is (256, 256, pi/4)


def _make_gym_env(image_size: tuple[int, int] | None) -> Any:
    """pixels_agent_pos at `image_size`, or environment_state_agent_pos when it is None (then `render()` films at
    IMAGE_SIZE, for rollout videos)."""
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # pygame renders off-screen; no display is opened
    try:
        import gym_pusht  # noqa: F401 - registers gym_pusht/PushT-v0
        import gymnasium
    except ImportError as error:
        raise EnvironmentError_(
            f"eval env 'pusht' needs the gym-pusht package, which is not installed ({error})"
        ) from None
    if image_size is None:
        return gymnasium.make(
            "gym_pusht/PushT-v0",
            obs_type=KEYPOINTS,
            visualization_height=IMAGE_SIZE,
            visualization_width=IMAGE_SIZE,
            max_episode_steps=MAX_EPISODE_STEPS,
            # gymnasium's passive checker warns when a keypoint leaves the declared [0, 512] box, as one of a T
            # pushed against a wall does; the values are still the package's.
            disable_env_checker=True,
        )
    return gymnasium.make(
        "gym_pusht/PushT-v0",
        obs_type=PIXELS,
        observation_height=image_size[0],
        observation_width=image_size[1],
        max_episode_steps=MAX_EPISODE_STEPS,
    )


class PushTEnv:
    """N gym-pusht environments stepped in lockstep; a finished one is frozen until the next reset. With
    `image_size` they observe the camera (pixels_agent_pos), without it the T's keypoints."""

    fps = FPS
    max_episode_steps = MAX_EPISODE_STEPS
    action_dim = 2

    def __init__(self, num_envs: int, image_size: tuple[int, int] | None = None):
        if num_envs < 1:
            raise ValueError("num_envs must be at least 1")
        self.num_envs = num_envs
        self.obs_type = PIXELS if image_size is not None else KEYPOINTS
        self.observation_features = (
            {STATE_KEY: 2} if image_size is not None else {STATE_KEY: 2, ENV_STATE_KEY: KEYPOINTS_DIM}
        )
        self.image_features = {IMAGE_KEY: (3, image_size[0], image_size[1])} if image_size is not None else {}
        self._envs = [_make_gym_env(image_size) for _ in range(num_envs)]
        self._last: list[dict[str, np.ndarray]] = []
        self._done = np.ones(num_envs, dtype=bool)
        self._success = np.zeros(num_envs, dtype=bool)
        self._reward = np.zeros(num_envs)
        self._steps = np.zeros(num_envs, dtype=np.int64)
        self.block_poses = np.zeros((num_envs, 3))  # privileged state, for the scripted controller

    def reset(self, seeds: Sequence[int]) -> dict[str, np.ndarray]:
        if len(seeds) != self.num_envs:
            raise ValueError(f"reset needs {self.num_envs} seeds, got {len(seeds)}")
        self._last = []
        for i, (env, seed) in enumerate(zip(self._envs, seeds, strict=True)):
            observation, info = env.reset(seed=int(seed))
            self._last.append(observation)
            self.block_poses[i] = info["block_pose"]
        self._done[:] = False
        self._success[:] = False
        self._reward[:] = 0.0
        self._steps[:] = 0
        return self._observation()

    def step(self, actions: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
        actions = np.clip(np.nan_to_num(np.asarray(actions, dtype=np.float64)), ACTION_LOW, ACTION_HIGH)
        if actions.shape != (self.num_envs, 2):
            raise ValueError(f"actions must have shape ({self.num_envs}, 2), got {actions.shape}")
        for i, env in enumerate(self._envs):
            if self._done[i]:
                continue
            observation, reward, terminated, truncated, info = env.step(actions[i])
            self._last[i] = observation
            self.block_poses[i] = info["block_pose"]
            self._steps[i] += 1
            self._reward[i] = float(reward)
            self._success[i] = bool(info["is_success"])
            self._done[i] = bool(terminated or truncated or self._success[i] or self._steps[i] >= MAX_EPISODE_STEPS)
        return self._observation(), self._reward.copy(), self._success.copy(), self._done.copy()

    def _observation(self) -> dict[str, np.ndarray]:
        observation = {STATE_KEY: np.stack([o["agent_pos"] for o in self._last]).astype(np.float32)}
        if self.obs_type == PIXELS:
            observation[IMAGE_KEY] = np.stack([o["pixels"] for o in self._last]).astype(np.uint8)
        else:
            observation[ENV_STATE_KEY] = np.stack([o["environment_state"] for o in self._last]).astype(np.float32)
        return observation

    def video_frames(self, count: int | None = None) -> np.ndarray:
        """The camera's current frames of the first `count` envs (all: None), (count, H, W, 3) uint8, for rollout
        videos; the keypoint env renders them now, only those."""
        count = self.num_envs if count is None else count
        if self.obs_type == PIXELS:
            return np.stack([o["pixels"] for o in self._last[:count]]).astype(np.uint8)
        return np.stack([env.render() for env in self._envs[:count]]).astype(np.uint8)

    def close(self) -> None:
        for env in self._envs:
            env.close()


# The controller walks round the block on a circle of this radius until it is behind it (seen from the goal),
# then pushes the block's centre toward the goal, at most MAX_STEP pixels of target per step.
ORBIT_RADIUS = 100.0
CONTACT_RADIUS = 50.0
BLOCK_COG = np.array([0.0, 45.0])  # the T's centre of gravity in the block's frame (gym-pusht's add_tee)
PUSH_ANGLE = np.deg2rad(20.0)
ORBIT_STEP = np.deg2rad(25.0)
MAX_STEP = 25.0


def scripted_actions(agent: np.ndarray, block_poses: np.ndarray) -> np.ndarray:
    """Targets (N, 2) for agents at `agent` (N, 2) pushing blocks at `block_poses` (N, 3: x, y, angle) to the goal.
    It moves the block, not its angle, so it raises coverage without reliably reaching success."""
    cos_a, sin_a = np.cos(block_poses[:, 2]), np.sin(block_poses[:, 2])
    block = block_poses[:, :2] + np.stack(
        [cos_a * BLOCK_COG[0] - sin_a * BLOCK_COG[1], sin_a * BLOCK_COG[0] + cos_a * BLOCK_COG[1]], axis=1
    )
    goal_cog = GOAL_XY + np.array([-np.sin(np.pi / 4) * BLOCK_COG[1], np.cos(np.pi / 4) * BLOCK_COG[1]])
    to_goal = goal_cog - block
    distance = np.linalg.norm(to_goal, axis=1, keepdims=True)
    forward = to_goal / np.maximum(distance, 1e-9)
    behind = -forward
    relative = agent - block
    angle = np.arctan2(behind[:, 0] * relative[:, 1] - behind[:, 1] * relative[:, 0], np.sum(behind * relative, axis=1))
    push = np.abs(angle) < PUSH_ANGLE
    push_target = block - forward * CONTACT_RADIUS + forward * np.minimum(distance, MAX_STEP)
    new_angle = angle - np.sign(angle) * np.minimum(np.abs(angle), ORBIT_STEP)
    cos, sin = np.cos(new_angle)[:, None], np.sin(new_angle)[:, None]
    rotated = np.concatenate(
        [behind[:, 0:1] * cos - behind[:, 1:2] * sin, behind[:, 0:1] * sin + behind[:, 1:2] * cos], axis=1
    )
    orbit_target = block + rotated * ORBIT_RADIUS
    target = np.where(push[:, None], push_target, orbit_target)
    step = target - agent
    length = np.linalg.norm(step, axis=1, keepdims=True)
    target = agent + step * np.minimum(1.0, MAX_STEP / np.maximum(length, 1e-9))
    return np.clip(target, ACTION_LOW, ACTION_HIGH)


def generate_demonstrations(
    episodes: int, seed: int, noise: float = 5.0, max_steps: int = 150, obs_type: str = PIXELS
) -> list[dict[str, np.ndarray]]:
    """`episodes` rollouts of the scripted controller (with Gaussian noise of `noise` pixels on the executed target;
    the recorded action is the clean target), `max_steps` long at most, in LeRobot's PushT layout: observation.image
    (T, 96, 96, 3) uint8 (or, for the keypoints layout, observation.environment_state (T, 16)), observation.state
    (T, 2), action (T, 2), next.reward, next.success, next.done."""
    if obs_type not in OBS_TYPES:
        raise ValueError(f"obs_type must be one of {OBS_TYPES}, got {obs_type!r}")
    rng = np.random.default_rng(seed)
    env = PushTEnv(episodes, (IMAGE_SIZE, IMAGE_SIZE) if obs_type == PIXELS else None)
    observation = env.reset([seed * 100_000 + i for i in range(episodes)])
    steps = []
    alive = np.ones(episodes, dtype=bool)
    for _ in range(max_steps):
        action = scripted_actions(observation[STATE_KEY].astype(np.float64), env.block_poses)
        executed = action + rng.normal(0.0, noise, action.shape)
        next_observation, reward, success, done = env.step(executed)
        steps.append(
            {
                **{key: observation[key] for key in (IMAGE_KEY, ENV_STATE_KEY) if key in observation},
                STATE_KEY: observation[STATE_KEY],
                "action": action.astype(np.float32),
                "next.reward": reward.astype(np.float32),
                "next.success": success.copy(),
                "next.done": done.copy(),
                "alive": alive.copy(),
            }
        )
        alive = ~done
        observation = next_observation
        if done.all():
            break
    env.close()
    stacked = {key: np.stack([step[key] for step in steps], axis=1) for key in steps[0]}
    lengths = stacked["alive"].sum(axis=1)
    return [{k: v[i, : lengths[i]] for k, v in stacked.items() if k != "alive"} for i in range(episodes)]


def dataset_features(video: bool = False, obs_type: str = PIXELS) -> dict:
    """LeRobot's PushT features: a 96x96 camera (lerobot/pusht) or the T's 8 keypoints (lerobot/pusht_keypoints),
    the agent position and the target action."""
    if obs_type == KEYPOINTS:
        observation = {ENV_STATE_KEY: {"dtype": "float32", "shape": [KEYPOINTS_DIM], "names": None}}
    else:
        camera = {"dtype": "video" if video else "image", "shape": [IMAGE_SIZE, IMAGE_SIZE, 3], "names": None}
        observation = {IMAGE_KEY: camera}
    return {
        **observation,
        STATE_KEY: {"dtype": "float32", "shape": [2], "names": ["x", "y"]},
        "action": {"dtype": "float32", "shape": [2], "names": ["x", "y"]},
        "next.reward": {"dtype": "float32", "shape": [1], "names": None},
        "next.success": {"dtype": "bool", "shape": [1], "names": None},
        "next.done": {"dtype": "bool", "shape": [1], "names": None},
    }
