"""The training spec: one pydantic model that the CLI reads from JSON and the API accepts as a job body.

Only `policy.type` and `dataset.uri` are required. Unknown fields are refused (`extra="forbid"`), and every error
names its field, so a bad spec fails at submit time and never on a GPU.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from training.policies.act.configuration_act import ActConfig
from training.policies.configuration_base import ObservationKind
from training.policies.diffusion.configuration_diffusion import DiffusionConfig
from training.policies.mlp.configuration_mlp import MlpConfig

PolicyConfig = Annotated[MlpConfig | ActConfig | DiffusionConfig, Field(discriminator="type")]

BUILTIN_DATASETS = ("push2d", "pusht")
EVAL_ENVS = ("push2d", "pusht")
# Observation kinds of builtin datasets (training.envs.push2d.OBS_TYPES; pusht: LeRobot's two layouts, pusht.OBS_TYPES).
BUILTIN_OBS_TYPES = {
    "push2d": ("state", "pixels", "pixels_agent_pos"),
    "pusht": ("pixels_agent_pos", "environment_state_agent_pos"),
}
BUILTIN_IMAGE_SIZES = {"push2d": (16, 512), "pusht": (96, 96)}
# Modal's GPU names (Modal docs, "GPU acceleration"); "A10G" is the older name for "A10".
GPU_TYPES = (
    "T4",
    "L4",
    "A10G",
    "A10",
    "L40S",
    "A100",
    "A100-40GB",
    "A100-80GB",
    "RTX-PRO-6000",
    "H100",
    "H200",
    "B200",
)

_HF_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*(@[A-Za-z0-9._/-]+)?$")
_S3_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_BUILTIN_PARAMS = ("episodes", "seed", "obs_type", "image_size", "video")

# The URIs the validator below accepts, as a JSON-schema regex (ECMA and Rust-regex compatible) so the OpenAPI schema
# states the rule to clients and fuzzers; the validator stays and gives the precise message. Every string this pattern
# matches passes the validator (built from the same constants); the validator's ranges become digit counts here.
_EPISODES = r"([1-9][0-9]{0,4}|100000)"  # 1..100000
_SEED = r"[0-9]{1,4}"  # 0..9999
_EVEN_16_TO_512 = r"(1[68]|[2-9][02468]|[1-4][0-9][02468]|50[02468]|51[02])"


def _ordered_params(params: list[str]) -> str:
    """Any non-empty selection of `params`, in this order, joined by '&' (the pattern promises the canonical order;
    the validator accepts any)."""
    alternatives = []
    for first in range(len(params)):
        alternatives.append(params[first] + "".join(f"(&{p})?" for p in params[first + 1 :]))
    return "(" + "|".join(alternatives) + ")"


_PUSH2D_QUERY = _ordered_params(
    [
        f"episodes={_EPISODES}",
        f"seed={_SEED}",
        "obs_type=(state|pixels|pixels_agent_pos)",
        f"image_size={_EVEN_16_TO_512}",
        "video=(0|1)",
    ]
)
_PUSHT_QUERY = _ordered_params(
    [f"episodes={_EPISODES}", f"seed={_SEED}", "obs_type=(pixels_agent_pos|environment_state_agent_pos)", "video=(0|1)"]
)
DATASET_URI_PATTERN = (
    r"^("
    rf"builtin://push2d(\?({_PUSH2D_QUERY}|seed={_SEED}&episodes={_EPISODES}))?"
    rf"|builtin://pusht(\?{_PUSHT_QUERY})?"
    r"|file://(localhost)?/.*"
    r"|hf://[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*(@[A-Za-z0-9._/-]+)?"
    r"|s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?"
    r")$"
)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetSpec(_Section):
    uri: str = Field(
        max_length=2048,
        # Schema only (not `pattern=`): the validator's messages name the exact problem; a regex mismatch would not.
        json_schema_extra={"pattern": DATASET_URI_PATTERN},
        description="builtin://push2d?episodes=200&seed=0 | file:///abs/path | hf://org/name[@revision] | s3://bucket/prefix",
    )
    val_fraction: float = Field(0.1, ge=0.0, lt=0.5, description="Share of episodes held out for val/loss.")

    @field_validator("uri")
    @classmethod
    def _check_uri(cls, uri: str) -> str:
        parts = urlsplit(uri)
        if parts.scheme == "builtin":
            if parts.netloc not in BUILTIN_DATASETS:
                raise ValueError(f"unknown builtin dataset {parts.netloc!r}; allowed: {', '.join(BUILTIN_DATASETS)}")
            params = parse_qs(parts.query, keep_blank_values=True)
            unknown = set(params) - set(_BUILTIN_PARAMS)
            if unknown:
                raise ValueError(
                    f"unknown builtin parameter(s) {sorted(unknown)}; allowed: {', '.join(_BUILTIN_PARAMS)}"
                )
            for name, values in params.items():
                if len(values) != 1 or (name != "obs_type" and not values[0].isdigit()):
                    raise ValueError(f"builtin parameter {name} must be one non-negative integer")
            obs_types = BUILTIN_OBS_TYPES[parts.netloc]
            if params.get("obs_type", [obs_types[0]])[0] not in obs_types:
                raise ValueError(f"builtin parameter obs_type must be one of {', '.join(obs_types)}")
            low, high = BUILTIN_IMAGE_SIZES[parts.netloc]
            image_size = int(params.get("image_size", [str(low if low == high else 64)])[0])
            if not low <= image_size <= high or image_size % 2:
                raise ValueError(f"builtin parameter image_size must be an even number from {low} to {high}")
            if params.get("video", ["0"])[0] not in ("0", "1"):
                raise ValueError("builtin parameter video must be 0 or 1")
            episodes = int(params.get("episodes", ["200"])[0])
            if not 1 <= episodes <= 100_000:
                raise ValueError("builtin parameter episodes must be between 1 and 100000")
            if int(params.get("seed", ["0"])[0]) >= 10_000:
                raise ValueError("builtin parameter seed must be below 10000")
        elif parts.scheme == "file":
            if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
                raise ValueError("file:// URIs need an absolute path: file:///abs/path")
        elif parts.scheme == "hf":
            if not _HF_REPO.match(parts.netloc + parts.path):
                raise ValueError("hf:// URIs look like hf://org/name or hf://org/name@revision")
        elif parts.scheme == "s3":
            if not _S3_BUCKET.match(parts.netloc):
                raise ValueError("s3:// URIs look like s3://bucket/prefix with a valid bucket name")
        else:
            raise ValueError("dataset.uri must start with builtin://, file://, hf:// or s3://")
        return uri


class TrainingParams(_Section):
    steps: int = Field(5000, ge=1, le=10_000_000)
    batch_size: int = Field(64, ge=1, le=65536)
    lr: float | None = Field(None, gt=0, le=1.0, description="Defaults to the policy's optimizer preset.")
    weight_decay: float | None = Field(None, ge=0, le=1.0, description="Defaults to the policy's preset.")
    warmup_steps: int | None = Field(None, ge=0, description="Defaults to the policy's preset.")
    grad_clip: float = Field(10.0, gt=0)
    seed: int = Field(1000, ge=0, le=2**31 - 1)
    checkpoint_every: int = Field(1000, ge=1)
    log_every: int = Field(100, ge=1)
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"


class EvalSpec(_Section):
    env: Literal["push2d", "pusht"] | None = Field(
        None, description="Simulation to roll the trained policy out in (pusht: the gym-pusht package), or null."
    )
    episodes: int = Field(50, ge=1, le=10_000)
    every: int | None = Field(None, ge=1, description="Also evaluate every this many steps.")
    videos: int = Field(4, ge=0, le=32, description="Rollouts of each evaluation saved as video (as LeRobot's 4).")


class ComputeSpec(_Section):
    gpu: Literal[GPU_TYPES] | None = Field(  # type: ignore[valid-type]
        None, description="The GPU to train on; null means the service's default (ROBOTRAIN_DEFAULT_GPU)."
    )
    timeout_minutes: int = Field(60, ge=1, le=24 * 60)


class TrainSpec(BaseModel):
    """A whole training job."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field("", max_length=200)
    policy: PolicyConfig
    dataset: DatasetSpec
    training: TrainingParams = TrainingParams()
    eval: EvalSpec = EvalSpec()
    compute: ComputeSpec = ComputeSpec()

    def resolved_lr(self, kind: ObservationKind = "state") -> float:
        """The learning rate for a dataset of this observation kind ("camera" when it has a camera feature)."""
        return self.training.lr if self.training.lr is not None else self.policy.optimizer_preset(kind).lr

    def resolved_weight_decay(self, kind: ObservationKind = "state") -> float:
        wd = self.training.weight_decay
        return wd if wd is not None else self.policy.optimizer_preset(kind).weight_decay

    def resolved_warmup_steps(self, kind: ObservationKind = "state") -> int:
        warmup = self.training.warmup_steps
        return warmup if warmup is not None else self.policy.optimizer_preset(kind).warmup_steps

    def resolved_scheduler(self, kind: ObservationKind = "state") -> str:
        return self.policy.optimizer_preset(kind).scheduler
