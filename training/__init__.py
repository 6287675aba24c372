"""robotrain's training library: BC-MLP, ACT and Diffusion Policy on LeRobot datasets, evaluated in simulation.

    training.run(spec, out_dir, reporter) -> TrainResult
    training.load_policy(path, device="cpu") -> Policy   (reset() / select_action(observation))
    training.evaluate(policy, env_name, episodes, device=...) -> dict

It is pure PyTorch and imports nothing from the service. The entry points are imported on first use, so the API can
import `training.spec` to validate job bodies without loading the trainer, the data readers or the simulators.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from training.checkpoint import load_policy
    from training.evaluate import evaluate, wilson_interval
    from training.reporter import NullReporter, Reporter
    from training.spec import TrainSpec
    from training.trainer import TrainResult, run

_LAZY = {
    "run": "training.trainer",
    "TrainResult": "training.trainer",
    "load_policy": "training.checkpoint",
    "evaluate": "training.evaluate",
    "wilson_interval": "training.evaluate",
    "Reporter": "training.reporter",
    "NullReporter": "training.reporter",
    "TrainSpec": "training.spec",
}

__all__ = [
    "NullReporter",
    "Reporter",
    "TrainResult",
    "TrainSpec",
    "evaluate",
    "load_policy",
    "run",
    "wilson_interval",
]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'training' has no attribute {name!r}")
