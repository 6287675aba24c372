"""Policy families. Configs are light and imported eagerly (the API validates specs with them); modeling modules
are imported only when a policy is built, as LeRobot's factory does."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor

    from training.data.dataset import PolicyFeatures
    from training.policies.base import Policy
    from training.policies.configuration_base import PolicyConfigBase

_MODELING = {
    "mlp": ("training.policies.mlp.modeling_mlp", "MlpPolicy"),
    "act": ("training.policies.act.modeling_act", "ActPolicy"),
    "diffusion": ("training.policies.diffusion.modeling_diffusion", "DiffusionPolicy"),
}


def get_policy_class(policy_type: str) -> type[Policy]:
    module_name, class_name = _MODELING[policy_type]
    return getattr(importlib.import_module(module_name), class_name)


def make_policy(
    config: PolicyConfigBase, features: PolicyFeatures, stats: dict[str, dict[str, Tensor]] | None
) -> Policy:
    return get_policy_class(config.type)(config, features, stats)
