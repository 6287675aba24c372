"""How big a policy and its batches are, known before anything is allocated.

`count_parameters` builds the policy on torch's `meta` device (shapes without storage) from its config and the
dataset's features, so it is exact for any architecture and costs no memory: a config asking for 10**12 parameters
is counted, not allocated. Results are cached by (config, features), so repeated submits of one spec cost nothing.
torch is imported on first use only, so the API loads it when the first spec is checked, not at start.
"""

from __future__ import annotations

from functools import lru_cache

from training.data.dataset import PolicyFeatures
from training.policies.configuration_base import PolicyConfigBase
from training.spec import Limits, TrainSpec

FLOAT_BYTES = 4  # frames live on the training device as float32


def count_parameters(config: PolicyConfigBase, features: PolicyFeatures) -> int:
    """The policy's parameter count; ValueError when it cannot be built for these features."""
    return _count(config, tuple(features.observation.items()), features.action_dim, tuple(features.images.items()))


@lru_cache(maxsize=256)
def _count(
    config: PolicyConfigBase,
    observation: tuple[tuple[str, int], ...],
    action_dim: int,
    images: tuple[tuple[str, tuple[int, int, int]], ...],
) -> int:
    # Frozen configs hash and compare by value, so equal specs share one entry.
    import torch

    from training.policies import make_policy

    try:
        with torch.device("meta"):
            features = PolicyFeatures(observation=dict(observation), action_dim=action_dim, images=dict(images))
            policy = make_policy(config, features, None)
    except RuntimeError as error:  # shapes torch refuses: the config cannot be built for these features
        raise ValueError(str(error).splitlines()[0]) from None
    return sum(parameter.numel() for parameter in policy.parameters())


def frame_bytes(features: PolicyFeatures) -> int:
    """Bytes of one frame as a batch holds it for the policy: every vector feature, the action, and each camera's
    image at its stored size (float32 once a batch is drawn; the frame cache keeps uint8)."""
    camera_values = sum(channels * height * width for channels, height, width in features.images.values())
    return FLOAT_BYTES * (sum(features.observation.values()) + features.action_dim + camera_values)


def checkpoint_bytes(num_parameters: int, config: PolicyConfigBase) -> int:
    """About what one checkpoint of this policy weighs: the weights, Adam's two moments, and with EMA the raw
    weights and the averaged copy as well (normalisation stats and JSON are small)."""
    copies = 3 + (2 if getattr(config, "use_ema", False) else 0)
    return FLOAT_BYTES * num_parameters * copies


def size_problems(spec: TrainSpec, limits: Limits, features: PolicyFeatures) -> list[str]:
    """What the policy's size and the batch's size break of `limits`, one sentence each (empty when within)."""
    problems = []
    if limits.max_parameters is not None:
        parameters = count_parameters(spec.policy, features)  # ValueError: the policy cannot use these features
        if parameters > limits.max_parameters:
            problems.append(
                f"the policy has {parameters:,} parameters; this service allows at most {limits.max_parameters:,}"
            )
    if limits.max_batch_bytes is not None:
        batch = spec.training.batch_size * frame_bytes(features)
        if batch > limits.max_batch_bytes:
            problems.append(
                f"training.batch_size {spec.training.batch_size} x {frame_bytes(features):,} bytes per frame is "
                f"{batch:,} bytes; this service allows at most {limits.max_batch_bytes:,}"
            )
    return problems
