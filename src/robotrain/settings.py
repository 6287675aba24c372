"""The one settings object, read from the environment once. Nothing else in the service reads os.environ.

Adapters are chosen by which variables are set, each port independently: SUPABASE_URL + SUPABASE_KEY select the
Supabase store, SQS_QUEUE_URL + AWS_REGION the SQS queue, a CLERK_* key source the Clerk verifier, ROBOTRAIN_LAUNCHER=
modal the Modal launcher. Everything else runs on embedded defaults under ROBOTRAIN_DATA_DIR.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

GIB = 1 << 30

# The settings a worker process is given (Settings.child_environ): what it needs to read and write its job, and the
# rules and limits it enforces again. An allow-list, so a secret setting added later (like the internal token or the
# Clerk keys, which only the API uses) never reaches a process that runs user-chosen training.
WORKER_SETTINGS = (
    "data_dir",
    "log_level",
    "heartbeat_interval_s",
    "progress_interval_s",
    "queue_visibility_timeout_s",
    "queue_max_receives",
    "artifacts_dir",
    "dataset_cache_dir",
    "datasets_dir",
    "weights_dir",
    "supabase_url",
    "supabase_key",
    "supabase_timeout_s",
    "sqs_queue_url",
    "aws_region",
    "aws_endpoint_url_sqs",
    "file_dataset_roots",
    "s3_buckets",
    "hf_orgs",
    "max_policy_parameters",
    "max_batch_bytes",
    "max_steps",
    "max_eval_episodes",
    "max_builtin_episodes",
    "max_checkpoint_saves",
    "max_dataset_bytes",
    "max_artifacts_bytes_per_user",
    "checkpoints_kept",
)
# What a worker inherits from this process's environment beyond its settings: how to run Python and find a GPU, and
# the credentials its SDKs read from the environment themselves (boto3: AWS_*, for SQS and S3 datasets; the Hub:
# HF_*, whose token is used only for the organisations the operator lists).
WORKER_ENVIRONMENT = (
    "PATH",
    "HOME",
    "LANG",
    "TZ",
    "TMPDIR",
    "PYTHONPATH",
    "VIRTUAL_ENV",
    "PYTHONUNBUFFERED",
    "LD_LIBRARY_PATH",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "CUDA_VISIBLE_DEVICES",
    "NVIDIA_VISIBLE_DEVICES",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "HF_TOKEN",
    "HF_ENDPOINT",
    "HF_HOME",
    "HF_HUB_OFFLINE",
)
WORKER_ENVIRONMENT_PREFIXES = ("AWS_", "LC_")


def _csv(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return value
    return [part.strip() for part in value.split(",") if part.strip()]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ROBOTRAIN_", extra="ignore", frozen=True)

    # --- embedded defaults -------------------------------------------------------------------------------------
    data_dir: Path = Path(".robotrain")
    host: str = "127.0.0.1"
    port: int = 8000
    internal_token: SecretStr | None = None
    max_concurrent_jobs: int = Field(1, ge=1)
    max_active_jobs_per_user: int = Field(10, ge=1)  # queued + starting + running at submit (429 beyond)
    max_running_jobs_per_user: int = Field(2, ge=1)  # starting + running at dispatch; the rest wait queued
    submit_rate_per_minute: int = Field(30, ge=1)  # per user, counted in the store (holds across API processes)
    max_body_bytes: int = 1024 * 1024
    drain_interval_s: float = Field(3.0, gt=0)
    # The Modal drain over SQS (robotrain.control.drain, "Receiving"): each receive long-polls this long (1 s or more
    # queries every SQS server, so an empty answer is true), and a drain kicked for a job waits this long for it.
    drain_receive_wait_s: float = Field(1.0, ge=0, le=20)
    drain_kick_wait_s: float = Field(20.0, ge=0, le=120)
    queue_visibility_timeout_s: int = Field(60, ge=0, le=43200)
    queue_max_receives: int = Field(5, ge=1)
    heartbeat_interval_s: float = Field(5.0, gt=0)
    heartbeat_stale_s: float = Field(60.0, gt=0)
    # silence (since the last heartbeat) after which a job whose launcher cannot tell if it runs counts as lost
    liveness_unknown_max_s: float = Field(600.0, gt=0)
    max_attempts: int = Field(3, ge=1)
    progress_interval_s: float = Field(2.0, gt=0)
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # How long an API process trusts a verified API key before reading it again (revocation reaches other API
    # processes within this; the one that revoked it forgets the key at once).
    api_key_cache_ttl_s: float = Field(30.0, ge=0, le=3600)
    launcher: Literal["subprocess", "modal"] = "subprocess"
    log_level: str = "INFO"
    # HTTP connections each process keeps open to Supabase and to SQS, shared by all its requests
    pool_connections: int = Field(64, ge=1)

    # --- Supabase (store) --------------------------------------------------------------------------------------
    supabase_url: str | None = Field(None, validation_alias=AliasChoices("SUPABASE_URL"))
    supabase_key: SecretStr | None = Field(None, validation_alias=AliasChoices("SUPABASE_KEY"))
    supabase_timeout_s: float = Field(10.0, validation_alias=AliasChoices("SUPABASE_TIMEOUT_S"))

    # --- SQS (queue) -------------------------------------------------------------------------------------------
    sqs_queue_url: str | None = Field(None, validation_alias=AliasChoices("SQS_QUEUE_URL"))
    aws_region: str | None = Field(None, validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION"))
    aws_endpoint_url_sqs: str | None = Field(None, validation_alias=AliasChoices("AWS_ENDPOINT_URL_SQS"))

    # --- Clerk (auth) ------------------------------------------------------------------------------------------
    clerk_jwt_key: SecretStr | None = Field(None, validation_alias=AliasChoices("CLERK_JWT_KEY"))
    clerk_jwks_url: str | None = Field(None, validation_alias=AliasChoices("CLERK_JWKS_URL"))
    clerk_publishable_key: str | None = Field(None, validation_alias=AliasChoices("CLERK_PUBLISHABLE_KEY"))
    clerk_secret_key: SecretStr | None = Field(None, validation_alias=AliasChoices("CLERK_SECRET_KEY"))
    clerk_api_url: str = Field("https://api.clerk.com", validation_alias=AliasChoices("CLERK_API_URL"))
    clerk_issuer: str | None = Field(None, validation_alias=AliasChoices("CLERK_ISSUER"))
    clerk_authorized_parties: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias=AliasChoices("CLERK_AUTHORIZED_PARTIES")
    )
    clerk_jwks_cooldown_s: float = Field(30.0, validation_alias=AliasChoices("CLERK_JWKS_COOLDOWN_S"))
    clerk_timeout_s: float = Field(5.0, validation_alias=AliasChoices("CLERK_TIMEOUT_S"))

    # --- Modal (launcher, artifacts) ---------------------------------------------------------------------------
    modal_app_name: str = "robotrain"
    default_gpu: str = "A10G"
    artifacts_dir: Path | None = None  # a mounted Modal Volume in production; data_dir/artifacts otherwise
    dataset_cache_dir: Path | None = None  # downloaded and generated datasets; data_dir/datasets otherwise
    weights_dir: Path | None = None  # pretrained backbone weights baked into the image (never downloaded in a job)

    # --- live: event streams, the dashboard, webhooks ----------------------------------------------------------
    stream_poll_interval_s: float = Field(0.5, gt=0)  # how often an open event stream reads the store
    stream_keepalive_s: float = Field(15.0, gt=0)  # an SSE comment this often keeps proxies from closing it
    stream_max_s: float = Field(120.0, gt=0)  # a stream then ends (under Modal's 150 s request cap); clients resume
    webhook_allow_private: bool = False  # endpoints on private/loopback addresses (and http there): dev and tests
    webhook_timeout_s: float = Field(10.0, gt=0)
    webhook_retry_base_s: float = Field(5.0, gt=0)  # first retry delay; each next one is 4x, up to the max
    webhook_retry_max_s: float = Field(6 * 3600.0, gt=0)
    webhook_retry_for_s: float = Field(26 * 3600.0, gt=0)  # a delivery is retried this long before it is failed

    # --- tenancy: what a user may read and use (README, "Security model") ------------------------------------------
    datasets_dir: Path | None = None  # uploaded datasets; data_dir/uploads otherwise (the artifacts Volume on Modal)
    max_upload_bytes: int = Field(4 * GIB, ge=1)  # an upload's request body (the 1 MiB JSON limit does not apply)
    file_dataset_roots: Annotated[list[Path], NoDecode] = Field(default_factory=list)  # file:// only under these
    s3_buckets: Annotated[list[str], NoDecode] = Field(default_factory=list)  # s3:// only for these
    hf_orgs: Annotated[list[str], NoDecode] = Field(default_factory=list)  # the Hub token only for these orgs
    max_policy_parameters: int = Field(500_000_000, ge=1)
    max_batch_bytes: int = Field(GIB, ge=1)  # training.batch_size x the bytes of one frame
    max_steps: int = Field(1_000_000, ge=1)
    max_eval_episodes: int = Field(1000, ge=1)  # per job, periodic evaluations included
    max_builtin_episodes: int = Field(5000, ge=1)
    max_checkpoint_saves: int = Field(10_000, ge=1)  # checkpoints a job writes, kept or not
    max_dataset_bytes: int = Field(10 * GIB, ge=1)  # a dataset read, downloaded or uploaded (extracted)
    max_artifacts_bytes_per_user: int = Field(50 * GIB, ge=1)  # a user's uploads and job artifacts together
    checkpoints_kept: int = Field(3, ge=1)  # per job: the last N, and the best by evaluation

    @field_validator(
        "cors_origins", "clerk_authorized_parties", "file_dataset_roots", "s3_buckets", "hf_orgs", mode="before"
    )
    @classmethod
    def _split_csv(cls, value: str | list[str] | None) -> list[str]:
        return _csv(value)

    @cached_property
    def resolved_artifacts_dir(self) -> Path:
        return self.artifacts_dir or self.data_dir / "artifacts"

    def as_environ(self, only: Collection[str] | None = None) -> dict[str, str]:
        """These settings (or the fields named in `only`) as the variables they are read from, so a child process
        (a worker) that builds `Settings()` from its environment gets the same values. Unset (None) fields are left
        out; paths are made absolute, so a child with another working directory finds the same data."""
        variables: dict[str, str] = {}
        for name, info in type(self).model_fields.items():
            if only is not None and name not in only:
                continue
            value = getattr(self, name)
            if value is None:
                continue
            alias = info.validation_alias
            if isinstance(alias, AliasChoices):
                variable = str(alias.choices[0])
            elif isinstance(alias, str):
                variable = alias
            else:
                variable = f"ROBOTRAIN_{name.upper()}"
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            if isinstance(value, list):
                variables[variable] = ",".join(str(v.absolute()) if isinstance(v, Path) else str(v) for v in value)
            elif isinstance(value, Path):
                variables[variable] = str(value.absolute())
            else:
                variables[variable] = str(value)
        return variables

    def child_environ(self) -> dict[str, str]:
        """The environment for a worker process, built from allow-lists: the variables of WORKER_ENVIRONMENT (and
        WORKER_ENVIRONMENT_PREFIXES) this process has, and the settings of WORKER_SETTINGS written out as the
        variables they are read from. Nothing else: no API secret, no unrelated variable of the server's shell."""
        inherited = {
            name: value
            for name, value in os.environ.items()
            if name in WORKER_ENVIRONMENT or name.startswith(WORKER_ENVIRONMENT_PREFIXES)
        }
        return {**inherited, **self.as_environ(only=WORKER_SETTINGS)}

    @property
    def resolved_dataset_cache_dir(self) -> Path:
        return self.dataset_cache_dir or self.data_dir / "datasets"

    @property
    def resolved_datasets_dir(self) -> Path:
        return self.datasets_dir or self.data_dir / "uploads"

    @property
    def uses_supabase(self) -> bool:
        return bool(self.supabase_url and self.supabase_key)

    @property
    def uses_sqs(self) -> bool:
        return bool(self.sqs_queue_url and self.aws_region)

    @property
    def uses_clerk(self) -> bool:
        return bool(self.clerk_jwt_key or self.clerk_jwks_url or self.clerk_publishable_key or self.clerk_secret_key)


class ClientSettings(BaseSettings):
    """What the `robotrain` CLI needs as a client of a server: ROBOTRAIN_URL and ROBOTRAIN_TOKEN, and where
    `robotrain login` keeps its API key (XDG_CONFIG_HOME, else ~/.config)."""

    model_config = SettingsConfigDict(env_prefix="ROBOTRAIN_", extra="ignore", frozen=True)

    url: str = "http://127.0.0.1:8000"
    token: SecretStr | None = None
    config_home: Path | None = Field(None, validation_alias=AliasChoices("XDG_CONFIG_HOME"))

    @property
    def credentials_file(self) -> Path:
        # The XDG base directory spec: a relative XDG_CONFIG_HOME is invalid and ignored.
        home = self.config_home if self.config_home and self.config_home.is_absolute() else None
        return (home or Path.home() / ".config") / "robotrain" / "credentials.json"
