"""The one settings object, read from the environment once. Nothing else in the service reads os.environ.

Adapters are chosen by which variables are set, each port independently: SUPABASE_URL + SUPABASE_KEY select the
Supabase store, SQS_QUEUE_URL + AWS_REGION the SQS queue, a CLERK_* key source the Clerk verifier, ROBOTRAIN_LAUNCHER=
modal the Modal launcher. Everything else runs on embedded defaults under ROBOTRAIN_DATA_DIR.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


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
    submit_rate_per_minute: int = Field(30, ge=1)
    max_body_bytes: int = 1024 * 1024
    drain_interval_s: float = Field(3.0, gt=0)
    queue_visibility_timeout_s: int = Field(60, ge=0, le=43200)
    queue_max_receives: int = Field(5, ge=1)
    heartbeat_interval_s: float = Field(5.0, gt=0)
    heartbeat_stale_s: float = Field(60.0, gt=0)
    # silence (since the last heartbeat) after which a job whose launcher cannot tell if it runs counts as lost
    liveness_unknown_max_s: float = Field(600.0, gt=0)
    max_attempts: int = Field(3, ge=1)
    progress_interval_s: float = Field(2.0, gt=0)
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    launcher: Literal["subprocess", "modal"] = "subprocess"
    log_level: str = "INFO"

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

    @field_validator("cors_origins", "clerk_authorized_parties", mode="before")
    @classmethod
    def _split_csv(cls, value: str | list[str] | None) -> list[str]:
        return _csv(value)

    @cached_property
    def resolved_artifacts_dir(self) -> Path:
        return self.artifacts_dir or self.data_dir / "artifacts"

    def as_environ(self) -> dict[str, str]:
        """These settings as the variables they are read from, so a child process (a worker) that builds
        `Settings()` from its environment gets the same values. Unset (None) fields are left out; paths are made
        absolute, so a child with another working directory finds the same data."""
        variables: dict[str, str] = {}
        for name, info in type(self).model_fields.items():
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
                variables[variable] = ",".join(value)
            elif isinstance(value, Path):
                variables[variable] = str(value.absolute())
            else:
                variables[variable] = str(value)
        return variables

    def child_environ(self) -> dict[str, str]:
        """The environment for a worker process: this one's, with every setting written out (`as_environ`)."""
        return {**os.environ, **self.as_environ()}

    @property
    def resolved_dataset_cache_dir(self) -> Path:
        return self.dataset_cache_dir or self.data_dir / "datasets"

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
    """What the `robotrain` CLI needs as a client of a server: ROBOTRAIN_URL and ROBOTRAIN_TOKEN."""

    model_config = SettingsConfigDict(env_prefix="ROBOTRAIN_", extra="ignore", frozen=True)

    url: str = "http://127.0.0.1:8000"
    token: SecretStr | None = None
