"""push2d: a pure-numpy, vectorised 2-D push task with a scripted expert.

A pusher disk (radius 0.05) pushes a block disk (radius 0.08) on the square arena [-1, 1]^2 until the block's centre
is within `SUCCESS_TOLERANCE` of a goal point. Contact is quasi-static and frictionless: the block never moves by
itself; where the pusher would overlap it, the block is moved out along the contact normal.

- observation.state:             pusher xy, float32[2]
- observation.environment_state: block xy, goal xy, float32[4]
- observation.image:             (when the env is made with an image size) a top-down RGB render, uint8 (H, W, 3):
                                 the block in red, the goal in green, the pusher in blue, each an anti-aliased disc
                                 of its true radius (at least one pixel), so a policy can be trained from pixels only
- action:                        absolute target xy for the pusher, float32[2]. The pusher moves toward it by at most
                                 `MAX_SPEED` per step (as LeRobot's PushT takes a target position), so a policy
                                 only has to name where the pusher should be, which behaviour cloning learns well.
- reward: 1 on success, otherwise the share of the initial block-goal distance closed so far, clipped to [0, 1],
  so an episode's maximum reward measures progress.
- done: success or `MAX_EPISODE_STEPS` steps. A finished environment is frozen: later steps leave its state alone
  and report the same success, reward and done=True, so a batch can run until every environment is done.

Every array operation works on all N environments at once; only `reset` loops (one seeded generator per episode,
so an episode depends only on its own seed, whatever batch it runs in).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

FPS = 10
MAX_EPISODE_STEPS = 120
ARENA = 1.0
PUSHER_RADIUS = 0.05
BLOCK_RADIUS = 0.08
CONTACT_DISTANCE = PUSHER_RADIUS + BLOCK_RADIUS
MAX_SPEED = 0.08  # per step, i.e. 0.8 arena units per second at 10 fps
SUBSTEPS = 4  # contact is resolved this many times per step so a fast pusher cannot pass through the block
SUCCESS_TOLERANCE = 0.05
# Start states: block and goal away from the walls (room to get behind the block), never already solved.
START_HALF_WIDTH = 0.6
MIN_START_GOAL_DISTANCE = 0.3

STATE_KEY = "observation.state"
ENV_STATE_KEY = "observation.environment_state"
IMAGE_KEY = "observation.image"
OBSERVATION_FEATURES = {STATE_KEY: 2, ENV_STATE_KEY: 4}
# Observation kinds of a push2d dataset, named as gym-pusht names its obs_type.
OBS_TYPES = ("state", "pixels", "pixels_agent_pos")
DEFAULT_IMAGE_SIZE = 64
MIN_RENDER_RADIUS_PX = 1.0
VIDEO_SIZE = 128
ACTION_DIM = 2
TASK = "Push the block to the goal."

# Seeds: demonstrations use dataset_seed * DEMO_SEED_BLOCK + attempt (dataset seeds are < 10_000 by the spec, and
# a block has room for retries beyond the 100_000-episode maximum); evaluation uses EVAL_SEED_BASE + i. The two
# ranges are disjoint by construction.
DEMO_SEED_BLOCK = 200_000
MAX_DATASET_SEED = 10_000
DEMO_SEED_LIMIT = MAX_DATASET_SEED * DEMO_SEED_BLOCK  # 2e9, exclusive
EVAL_SEED_BASE = 2**31


def demo_seed(dataset_seed: int, attempt: int) -> int:
    if not 0 <= dataset_seed < MAX_DATASET_SEED or not 0 <= attempt < DEMO_SEED_BLOCK:
        raise ValueError(f"demo seed out of range: dataset seed {dataset_seed}, attempt {attempt}")
    return dataset_seed * DEMO_SEED_BLOCK + attempt


def eval_seeds(count: int, start: int = 0) -> list[int]:
    return [EVAL_SEED_BASE + start + i for i in range(count)]


def _sample_start(seed: int) -> np.ndarray:
    """pusher xy, block xy, goal xy for one episode, drawn from its own generator."""
    rng = np.random.default_rng(seed)
    block = rng.uniform(-START_HALF_WIDTH, START_HALF_WIDTH, 2)
    while True:
        goal = rng.uniform(-START_HALF_WIDTH, START_HALF_WIDTH, 2)
        if np.linalg.norm(goal - block) >= MIN_START_GOAL_DISTANCE:
            break
    pusher_bound = ARENA - PUSHER_RADIUS - 0.05
    while True:
        pusher = rng.uniform(-pusher_bound, pusher_bound, 2)
        if np.linalg.norm(pusher - block) >= CONTACT_DISTANCE + 0.05:
            break
    return np.concatenate([pusher, block, goal])


def render(pusher: np.ndarray, block: np.ndarray, goal: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Top-down RGB frames (N, H, W, 3) uint8 of N states (each xy (N, 2)); +y is up. One channel per object, each
    an anti-aliased disc (coverage = radius - distance + 0.5, clipped to [0, 1], in pixels)."""
    height, width = size
    scale = np.array([width, height]) / (2 * ARENA)  # pixels per arena unit, x and y
    cols = np.arange(width) + 0.5
    rows = np.arange(height) + 0.5

    def disc(centres: np.ndarray, radius: float) -> np.ndarray:
        px = (centres[:, 0] + ARENA) * scale[0]
        py = (ARENA - centres[:, 1]) * scale[1]
        distance = np.sqrt(
            (cols[None, None, :] - px[:, None, None]) ** 2 + (rows[None, :, None] - py[:, None, None]) ** 2
        )
        radius_px = max(radius * float(scale.min()), MIN_RENDER_RADIUS_PX)
        return np.clip(radius_px - distance + 0.5, 0.0, 1.0)

    frames = np.stack([disc(block, BLOCK_RADIUS), disc(goal, BLOCK_RADIUS), disc(pusher, PUSHER_RADIUS)], axis=-1)
    return np.round(frames * 255).astype(np.uint8)


class Push2DEnv:
    """N push2d episodes stepped together (the evaluator's VectorEnv). With `image_size` (height, width) the
    observation also holds the top-down render."""

    fps = FPS
    max_episode_steps = MAX_EPISODE_STEPS
    action_dim = ACTION_DIM

    def __init__(self, num_envs: int, image_size: tuple[int, int] | None = None):
        if num_envs < 1:
            raise ValueError("num_envs must be at least 1")
        self.num_envs = num_envs
        self.image_size = image_size
        self.observation_features = dict(OBSERVATION_FEATURES)
        self.image_features = {IMAGE_KEY: (3, *image_size)} if image_size is not None else {}
        self._pusher = np.zeros((num_envs, 2))
        self._block = np.zeros((num_envs, 2))
        self._goal = np.zeros((num_envs, 2))
        self._start_distance = np.ones(num_envs)
        self._steps = np.zeros(num_envs, dtype=np.int64)
        self._success = np.zeros(num_envs, dtype=bool)
        self._done = np.ones(num_envs, dtype=bool)
        self._reward = np.zeros(num_envs)

    def reset(self, seeds: Sequence[int]) -> dict[str, np.ndarray]:
        if len(seeds) != self.num_envs:
            raise ValueError(f"reset needs {self.num_envs} seeds, got {len(seeds)}")
        starts = np.stack([_sample_start(int(seed)) for seed in seeds])
        self._pusher, self._block, self._goal = starts[:, 0:2].copy(), starts[:, 2:4].copy(), starts[:, 4:6].copy()
        self._start_distance = np.linalg.norm(self._block - self._goal, axis=1)
        self._steps[:] = 0
        self._success[:] = False
        self._done[:] = False
        self._reward[:] = 0.0
        return self._observation()

    def step(self, actions: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
        actions = np.asarray(actions, dtype=np.float64)
        if actions.shape != (self.num_envs, ACTION_DIM):
            raise ValueError(f"actions must have shape ({self.num_envs}, {ACTION_DIM}), got {actions.shape}")
        active = ~self._done
        target = np.clip(np.nan_to_num(actions), -ARENA, ARENA)
        move = target - self._pusher
        length = np.linalg.norm(move, axis=1, keepdims=True)
        move = move * np.minimum(1.0, MAX_SPEED / np.maximum(length, 1e-12))
        move[~active] = 0.0

        pusher, block = self._pusher.copy(), self._block.copy()
        pusher_bound = ARENA - PUSHER_RADIUS
        block_bound = ARENA - BLOCK_RADIUS
        for _ in range(SUBSTEPS):
            pusher = np.clip(pusher + move / SUBSTEPS, -pusher_bound, pusher_bound)
            offset = block - pusher
            distance = np.linalg.norm(offset, axis=1, keepdims=True)
            # An exact overlap of centres has no normal; push along +x then (never reached from a valid state).
            normal = np.where(distance > 1e-9, offset / np.maximum(distance, 1e-9), np.array([1.0, 0.0]))
            touching = distance < CONTACT_DISTANCE
            block = np.where(touching, pusher + normal * CONTACT_DISTANCE, block)
            clipped = np.clip(block, -block_bound, block_bound)
            # A block held by a wall pushes the pusher back instead of overlapping it.
            pinned = touching & np.any(clipped != block, axis=1, keepdims=True)
            block = clipped
            back = block - pusher
            back_distance = np.linalg.norm(back, axis=1, keepdims=True)
            overlap = pinned & (back_distance < CONTACT_DISTANCE)
            pusher = np.where(overlap, block - back / np.maximum(back_distance, 1e-9) * CONTACT_DISTANCE, pusher)
            pusher = np.clip(pusher, -pusher_bound, pusher_bound)

        self._pusher = np.where(active[:, None], pusher, self._pusher)
        self._block = np.where(active[:, None], block, self._block)
        self._steps += active
        distance = np.linalg.norm(self._block - self._goal, axis=1)
        success = distance < SUCCESS_TOLERANCE
        progress = np.clip(1.0 - distance / np.maximum(self._start_distance, 1e-9), 0.0, 1.0)
        reward = np.where(success, 1.0, progress)
        self._reward = np.where(active, reward, self._reward)
        self._success = np.where(active, success, self._success)
        self._done = self._done | (active & (success | (self._steps >= MAX_EPISODE_STEPS)))
        return self._observation(), self._reward.copy(), self._success.copy(), self._done.copy()

    def video_frames(self, count: int | None = None) -> np.ndarray:
        """The current state of the first `count` environments (all: None) as (count, VIDEO_SIZE, VIDEO_SIZE, 3)
        uint8, for rollout videos."""
        chosen = slice(0, self.num_envs if count is None else count)
        return render(self._pusher[chosen], self._block[chosen], self._goal[chosen], (VIDEO_SIZE, VIDEO_SIZE))

    def _observation(self) -> dict[str, np.ndarray]:
        observation = {
            STATE_KEY: self._pusher.astype(np.float32),
            ENV_STATE_KEY: np.concatenate([self._block, self._goal], axis=1).astype(np.float32),
        }
        if self.image_size is not None:
            observation[IMAGE_KEY] = render(self._pusher, self._block, self._goal, self.image_size)
        return observation


# The expert keeps the pusher on a circle of this radius around the block while it walks round to the far side,
# so its straight moves never clip the block; it pushes once within EXPERT_PUSH_ANGLE of the line behind the block.
EXPERT_ORBIT_RADIUS = CONTACT_DISTANCE + 0.06
EXPERT_ORBIT_STEP = np.deg2rad(40.0)
EXPERT_PUSH_ANGLE = np.deg2rad(15.0)


def expert_actions(observation: dict[str, np.ndarray]) -> np.ndarray:
    """The scripted expert: a Markovian map from one observation to target positions, for N environments at once.

    Behind the block (within EXPERT_PUSH_ANGLE of the goal line) it aims at the contact point behind the block,
    advanced toward the goal by the remaining distance (at most one step), which both pushes and re-centres the
    pusher. Elsewhere it walks round the block on a circle, at most EXPERT_ORBIT_STEP of angle per target.
    """
    pusher = observation[STATE_KEY].astype(np.float64)
    env_state = observation[ENV_STATE_KEY].astype(np.float64)
    block, goal = env_state[:, 0:2], env_state[:, 2:4]
    to_goal = goal - block
    goal_distance = np.linalg.norm(to_goal, axis=1, keepdims=True)
    forward = to_goal / np.maximum(goal_distance, 1e-9)

    # Pusher angle around the block, measured from the "behind" direction (-forward), in (-pi, pi].
    relative = pusher - block
    behind = -forward
    angle = np.arctan2(behind[:, 0] * relative[:, 1] - behind[:, 1] * relative[:, 0], np.sum(behind * relative, axis=1))
    push = np.abs(angle) < EXPERT_PUSH_ANGLE

    contact = block - forward * CONTACT_DISTANCE
    push_target = contact + forward * np.minimum(goal_distance, MAX_SPEED)

    new_angle = angle - np.sign(angle) * np.minimum(np.abs(angle), EXPERT_ORBIT_STEP)
    cos, sin = np.cos(new_angle)[:, None], np.sin(new_angle)[:, None]
    rotated = np.concatenate(
        [behind[:, 0:1] * cos - behind[:, 1:2] * sin, behind[:, 0:1] * sin + behind[:, 1:2] * cos], axis=1
    )
    orbit_target = block + rotated * EXPERT_ORBIT_RADIUS

    target = np.where(push[:, None], push_target, orbit_target)
    return np.clip(target, -ARENA, ARENA).astype(np.float32)


DEFAULT_DEMO_NOISE = 0.05


def generate_demonstrations(
    episodes: int, seed: int, noise: float = DEFAULT_DEMO_NOISE, image_size: tuple[int, int] | None = None
) -> list[dict[str, np.ndarray]]:
    """`episodes` successful expert demonstrations for dataset seed `seed`, deterministic in (episodes, seed, noise);
    with `image_size`, each also holds observation.image (T, H, W, 3) uint8.

    The executed target is the expert's plus Gaussian noise (std `noise`), so the data visits off-course states and
    the way back; the recorded `action` is the expert's clean target for the observed state (DART-style labels).
    Only successful episodes are kept, so behaviour cloning never imitates a failure; a failed attempt (about 0-1%
    at the default noise) is replaced by the next seed of this dataset seed's block, keeping the episode count
    exact. Each episode maps observation.state, observation.environment_state, action (float32, (T, dim)) and
    next.reward (float32), next.success, next.done (bool), each (T,).
    """
    if episodes < 1:
        raise ValueError("episodes must be at least 1")
    if noise < 0:
        raise ValueError("noise must be non-negative")
    kept: list[dict[str, np.ndarray]] = []
    next_attempt = 0
    rounds = 0
    while len(kept) < episodes:
        needed = episodes - len(kept)
        if next_attempt + needed > DEMO_SEED_BLOCK:
            raise RuntimeError(f"the push2d expert failed too often to collect {episodes} episodes for seed {seed}")
        seeds = [demo_seed(seed, next_attempt + i) for i in range(needed)]
        next_attempt += needed
        kept.extend(_rollout_expert(seeds, np.random.default_rng([seed, rounds]), noise, image_size))
        rounds += 1
    return kept


def _rollout_expert(
    seeds: list[int], rng: np.random.Generator, noise: float, image_size: tuple[int, int] | None
) -> list[dict[str, np.ndarray]]:
    env = Push2DEnv(len(seeds), image_size)
    observation = env.reset(seeds)
    steps: list[dict[str, np.ndarray]] = []
    alive = np.ones(len(seeds), dtype=bool)
    for _ in range(env.max_episode_steps):
        action = expert_actions(observation)
        executed = action + rng.normal(0.0, noise, action.shape) if noise > 0 else action
        next_observation, reward, success, done = env.step(executed)
        step = {
            STATE_KEY: observation[STATE_KEY],
            ENV_STATE_KEY: observation[ENV_STATE_KEY],
            "action": action,
            "next.reward": reward.astype(np.float32),
            "next.success": success,
            "next.done": done,
            "alive": alive.copy(),
        }
        if image_size is not None:
            step[IMAGE_KEY] = observation[IMAGE_KEY]
        steps.append(step)
        alive = ~done
        observation = next_observation
        if done.all():
            break
    stacked = {key: np.stack([step[key] for step in steps], axis=1) for key in steps[0]}
    episodes = []
    for i in range(len(seeds)):
        if not success[i]:
            continue
        length = int(stacked["alive"][i].sum())
        episodes.append({key: value[i, :length] for key, value in stacked.items() if key != "alive"})
    return episodes


# The LeRobot `features` entries of a push2d dataset (the five default features are added by the writer).
DATASET_FEATURES: dict[str, dict] = {
    STATE_KEY: {"dtype": "float32", "shape": [2], "names": ["pusher_x", "pusher_y"]},
    ENV_STATE_KEY: {"dtype": "float32", "shape": [4], "names": ["block_x", "block_y", "goal_x", "goal_y"]},
    "action": {"dtype": "float32", "shape": [2], "names": ["target_x", "target_y"]},
    "next.reward": {"dtype": "float32", "shape": [1], "names": None},
    "next.success": {"dtype": "bool", "shape": [1], "names": None},
    "next.done": {"dtype": "bool", "shape": [1], "names": None},
}


def dataset_features(obs_type: str = "state", image_size: int = DEFAULT_IMAGE_SIZE, video: bool = False) -> dict:
    """The features of a push2d dataset of this observation kind: "state" (pusher, block and goal positions),
    "pixels" (the render only) or "pixels_agent_pos" (the render and the pusher position, PushT's layout); the
    render is stored as `video` or `image` (PNG)."""
    if obs_type not in OBS_TYPES:
        raise ValueError(f"obs_type must be one of {OBS_TYPES}, got {obs_type!r}")
    if obs_type == "state":
        return dict(DATASET_FEATURES)
    camera = {"dtype": "video" if video else "image", "shape": [image_size, image_size, 3], "names": None}
    features: dict[str, dict] = {IMAGE_KEY: camera}
    if obs_type == "pixels_agent_pos":
        features[STATE_KEY] = DATASET_FEATURES[STATE_KEY]
    features.update({k: v for k, v in DATASET_FEATURES.items() if k not in (STATE_KEY, ENV_STATE_KEY)})
    return features
