"""The training spec: one pydantic model that the CLI reads from JSON and the API accepts as a job body.

Only `policy.type` and `dataset.uri` are required. Unknown fields are refused (`extra="forbid"`), every float must be
finite (`allow_inf_nan=False`: JSON parsers accept `Infinity` and `NaN`), and every error names its field, so a bad
spec fails at submit time and never on a GPU. `Limits` are an operator's bounds on top of the spec's own ranges,
checked at submit (what the spec alone shows, `limit_problems`) and again by `training.run`.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from training.data.access import UPLOAD_SCHEME, UriError, file_path, hf_location, s3_location, upload_id
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

# One attempt of a job runs as one call of a serverless GPU function, which Modal caps at 24 hours ("Timeouts" in
# Modal's docs). The service's launcher gives the call TIMEOUT_GRACE_S more than the job's own timeout (the worker
# stops itself first, with a checkpoint), so the longest timeout a job may ask for is the cap less that grace. The
# Modal launcher reads both constants from here: one source of truth for the limit and its validation.
PLATFORM_MAX_TIMEOUT_S = 24 * 60 * 60
TIMEOUT_GRACE_S = 300
MAX_TIMEOUT_MINUTES = (PLATFORM_MAX_TIMEOUT_S - TIMEOUT_GRACE_S) // 60

_BUILTIN_PARAMS = ("episodes", "seed", "obs_type", "image_size", "video")

# The URIs the validator below accepts, as a JSON-schema regex (ECMA and Rust-regex compatible) so the OpenAPI schema
# states the rule to clients and fuzzers; the validator stays and gives the precise message. Every string this pattern
# matches passes the validator (built from the same constants); the validator's ranges become digit counts here.
_EPISODES = r"([1-9][0-9]{0,4}|100000)"  # 1..100000
_SEED = r"[0-9]{1,4}"  # 0..9999
# A path segment that is neither "." nor ".." (no lookarounds: they are not portable), without "/", "\\", "%" (an
# encoded "/" or "." could hide a climb), "?" or "#" (they would end the path), or NUL.
_PLAIN = r"[^/\\%?#\x00]"
_SEGMENT = rf"([^/\\%?#.\x00]{_PLAIN}*|\.[^/\\%?#.\x00]{_PLAIN}*|\.\.{_PLAIN}+)"
_REVISION_SEGMENT = r"([A-Za-z0-9_-][A-Za-z0-9._-]*|\.[A-Za-z0-9_-][A-Za-z0-9._-]*|\.\.[A-Za-z0-9._-]+)"
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
    rf"|file://(localhost)?/({_SEGMENT}(/{_SEGMENT})*)?"
    rf"|hf://[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*(@{_REVISION_SEGMENT}(/{_REVISION_SEGMENT})*)?"
    rf"|s3://[a-z0-9][a-z0-9.-]{{1,61}}[a-z0-9](/({_SEGMENT}(/{_SEGMENT})*)?)?"
    rf"|{UPLOAD_SCHEME}://ds_[0-9a-z]{{26}}"
    r")$"
)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class DatasetSpec(_Section):
    uri: str = Field(
        max_length=2048,
        # Schema only (not `pattern=`): the validator's messages name the exact problem; a regex mismatch would not.
        json_schema_extra={"pattern": DATASET_URI_PATTERN},
        description=(
            "builtin://push2d?episodes=200&seed=0 | dataset://<id of your upload> | file:///abs/path | "
            "hf://org/name[@revision] | s3://bucket/prefix (file://, s3:// and private hf:// need the operator's leave)"
        ),
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
        else:
            parsers = {"file": file_path, "hf": hf_location, "s3": s3_location, UPLOAD_SCHEME: upload_id}
            if parts.scheme not in parsers:
                raise ValueError("dataset.uri must start with builtin://, dataset://, file://, hf:// or s3://")
            try:
                parsers[parts.scheme](uri)
            except UriError as error:
                raise ValueError(str(error)) from None
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
    timeout_minutes: int = Field(
        60,
        ge=1,
        le=MAX_TIMEOUT_MINUTES,
        description=f"Per attempt; at most {MAX_TIMEOUT_MINUTES} (a GPU call's 24 h cap less the launcher's grace).",
    )


class TrainSpec(BaseModel):
    """A whole training job."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

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


# ------------------------------------------------------------------------------------------------------- limits
class Limits(BaseModel):
    """An operator's bounds on one job, beyond the spec's own ranges. None leaves a bound off (the library's
    default: `python -m training run` on a user's own machine)."""

    model_config = ConfigDict(frozen=True)

    max_parameters: int | None = Field(None, ge=1, description="Parameters of the policy.")
    max_batch_bytes: int | None = Field(None, ge=1, description="training.batch_size x the bytes of one frame.")
    max_steps: int | None = Field(None, ge=1)
    max_eval_episodes: int | None = Field(None, ge=1, description="Rollouts per job, periodic evaluations included.")
    max_builtin_episodes: int | None = Field(None, ge=1)
    max_checkpoint_saves: int | None = Field(None, ge=1, description="Checkpoints a job writes (kept or not).")
    max_dataset_bytes: int | None = Field(None, ge=1, description="Bytes of a dataset read or downloaded.")
    checkpoints_kept: int | None = Field(None, ge=1, description="The last N checkpoints are kept (and the best).")


def eval_episodes(spec: TrainSpec) -> int:
    """Rollouts the job runs: `eval.episodes` at the end, and again every `eval.every` steps before it."""
    if spec.eval.env is None:
        return 0
    periodic = (spec.training.steps - 1) // spec.eval.every if spec.eval.every else 0
    return spec.eval.episodes * (1 + periodic)


def checkpoint_saves(spec: TrainSpec) -> int:
    """Checkpoints the job writes: one every `checkpoint_every` steps and one at the end."""
    return spec.training.steps // spec.training.checkpoint_every + 1


def builtin_episodes(spec: TrainSpec) -> int | None:
    parts = urlsplit(spec.dataset.uri)
    if parts.scheme != "builtin":
        return None
    return int(parse_qs(parts.query).get("episodes", ["200"])[0])


def limit_problems(spec: TrainSpec, limits: Limits) -> list[str]:
    """What the spec alone shows to be over `limits`, one sentence each naming the field (empty when within)."""
    problems = []
    steps = spec.training.steps
    if limits.max_steps is not None and steps > limits.max_steps:
        problems.append(f"training.steps is {steps}; this service allows at most {limits.max_steps}")
    episodes = eval_episodes(spec)
    if limits.max_eval_episodes is not None and episodes > limits.max_eval_episodes:
        problems.append(
            f"eval.episodes and eval.every make {episodes} evaluation rollouts; this service allows at most "
            f"{limits.max_eval_episodes} per job"
        )
    builtin = builtin_episodes(spec)
    if builtin is not None and limits.max_builtin_episodes is not None and builtin > limits.max_builtin_episodes:
        problems.append(
            f"dataset.uri asks for {builtin} builtin episodes; this service generates at most "
            f"{limits.max_builtin_episodes}"
        )
    saves = checkpoint_saves(spec)
    if limits.max_checkpoint_saves is not None and saves > limits.max_checkpoint_saves:
        least = math.ceil(steps / max(1, limits.max_checkpoint_saves - 1))
        problems.append(
            f"training.checkpoint_every {spec.training.checkpoint_every} writes {saves} checkpoints over {steps} "
            f"steps; this service allows {limits.max_checkpoint_saves} per job (checkpoint_every >= {least})"
        )
    return problems
