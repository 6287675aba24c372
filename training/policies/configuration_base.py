"""Fields every policy config shares: the optimizer preset a policy brings (as LeRobot's `get_optimizer_preset`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

ObservationKind = Literal["state", "camera"]

# A layer's width. The bound only keeps shapes within what torch can represent (int64), so the parameter limit, not
# a parse error deep in torch, is what refuses a huge network; widths this large are never trained.
LayerWidth = Annotated[int, Field(ge=1, le=2**40)]
# One side of the size frames are decoded at.
ImageSide = Annotated[int, Field(ge=16, le=1024)]


@dataclass(frozen=True)
class OptimizerPreset:
    """What a policy trains with unless the spec says otherwise (LeRobot's `get_optimizer_preset`)."""

    lr: float
    weight_decay: float
    warmup_steps: int
    scheduler: Literal["cosine", "constant"]


def _type_is_required(schema: dict) -> None:
    # `type` has a default so a config class can be built directly, but in a spec it picks the policy family and
    # must be given: say so in the JSON schema (the API's OpenAPI), as the discriminated union already enforces.
    required = schema.setdefault("required", [])
    if "type" not in required:
        required.insert(0, "type")


class PolicyConfigBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, json_schema_extra=_type_is_required)

    type: str = ""  # each family narrows it to its Literal name

    # Cameras (used when the dataset has camera features; ignored otherwise).
    vision_backbone: Literal["resnet18", "small_cnn"] = Field(
        "resnet18", description="resnet18 (as LeRobot) or small_cnn (four convolutions, for CPU-scale work)"
    )
    pretrained_backbone: bool = Field(
        False,
        description="Start resnet18 from torchvision's ImageNet weights, read from the weights directory the job is "
        "given (never downloaded in a job); images are then normalised with ImageNet's statistics.",
    )
    image_size: tuple[ImageSide, ImageSide] | None = Field(
        None, description="(height, width) frames are decoded at; null: the camera's size, longer side at most 256."
    )
    # No crop by default, measured: a random crop shifts the whole frame, so a frame without fixed landmarks (push2d)
    # loses where things are in absolute terms, which absolute target actions need (README, "Cameras").
    crop_ratio: float = Field(
        1.0,
        gt=0.0,
        le=1.0,
        description="Crop side / image side: random crops in training, centred in evaluation; 1.0: no crop "
        "(Diffusion Policy's PushT setting is 0.875, 96 -> 84).",
    )
    # Optimizer preset, per observation kind ("state": vectors only; "camera": at least one camera), measured with
    # bench/policy_quality.py. A field set here (or in the spec's `training` section) overrides the preset.
    PRESETS: ClassVar[dict[str, OptimizerPreset]] = {
        "state": OptimizerPreset(1e-4, 1e-4, 0, "cosine"),
        "camera": OptimizerPreset(1e-4, 1e-4, 0, "cosine"),
    }
    optimizer_lr: float | None = Field(None, gt=0, le=1.0, description="null: the preset for the observation kind")
    optimizer_weight_decay: float | None = Field(None, ge=0, le=1.0, description="null: the preset")
    optimizer_betas: tuple[float, float] = (0.9, 0.999)
    scheduler_warmup_steps: int | None = Field(None, ge=0, description="null: the preset")
    scheduler: Literal["cosine", "constant"] | None = Field(
        None, description="cosine: warmup then cosine decay to 0; constant: warmup then constant. null: the preset"
    )

    def optimizer_preset(self, kind: ObservationKind) -> OptimizerPreset:
        """The preset for this observation kind with the config's own settings applied over it."""
        preset = self.PRESETS[kind]
        return OptimizerPreset(
            lr=self.optimizer_lr if self.optimizer_lr is not None else preset.lr,
            weight_decay=self.optimizer_weight_decay
            if self.optimizer_weight_decay is not None
            else preset.weight_decay,
            warmup_steps=self.scheduler_warmup_steps
            if self.scheduler_warmup_steps is not None
            else preset.warmup_steps,
            scheduler=self.scheduler if self.scheduler is not None else preset.scheduler,
        )

    @model_validator(mode="after")
    def _check_backbone(self) -> PolicyConfigBase:
        if self.pretrained_backbone and self.vision_backbone != "resnet18":
            raise ValueError("pretrained_backbone needs vision_backbone resnet18 (ImageNet weights exist only for it)")
        return self

    def backbone_norm(self) -> Literal["frozen_batch", "group"]:
        """The normalisation layers of a resnet18 backbone (ACT's: frozen batch norm)."""
        return "frozen_batch"

    @property
    def observation_delta_indices(self) -> list[int]:
        """Frame offsets of the observation history a sample carries, oldest first, ending at 0 (the current frame)."""
        raise NotImplementedError

    @property
    def action_delta_indices(self) -> list[int]:
        """Frame offsets of the action targets a sample carries."""
        raise NotImplementedError
