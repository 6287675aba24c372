"""Fields every policy config shares: the optimizer preset a policy brings (as LeRobot's `get_optimizer_preset`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


def _type_is_required(schema: dict) -> None:
    # `type` has a default so a config class can be built directly, but in a spec it picks the policy family and
    # must be given: say so in the JSON schema (the API's OpenAPI), as the discriminated union already enforces.
    required = schema.setdefault("required", [])
    if "type" not in required:
        required.insert(0, "type")


class PolicyConfigBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, json_schema_extra=_type_is_required)

    # Optimizer preset: used unless the spec's `training` section overrides lr / weight_decay / warmup_steps.
    optimizer_lr: float = Field(1e-4, gt=0, le=1.0)
    optimizer_weight_decay: float = Field(1e-4, ge=0, le=1.0)
    optimizer_betas: tuple[float, float] = (0.9, 0.999)
    scheduler_warmup_steps: int = Field(0, ge=0)

    @property
    def observation_delta_indices(self) -> list[int]:
        """Frame offsets of the observation history a sample carries, oldest first, ending at 0 (the current frame)."""
        raise NotImplementedError

    @property
    def action_delta_indices(self) -> list[int]:
        """Frame offsets of the action targets a sample carries."""
        raise NotImplementedError
