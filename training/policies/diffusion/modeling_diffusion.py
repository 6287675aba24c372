"""Diffusion Policy (UNet): DDPM training with epsilon prediction, DDIM sampling. Camera frames are encoded per
observation step by Diffusion Policy's image encoder (ResNet-18 with GroupNorm, spatial-softmax keypoints) and join
the global condition.

The action window of `horizon` steps starts at the oldest observation frame; the policy executes `n_action_steps`
of it starting at the current frame (index n_obs_steps - 1). State and action are min-max normalised to [-1, 1].
EMA weights are kept by the trainer (from config.use_ema / ema_power / ema_max_decay), not here.
"""

from __future__ import annotations

import torch
from torch import Tensor

from training.data.dataset import ACTION_KEY, PolicyFeatures
from training.policies.base import Policy
from training.policies.diffusion.configuration_diffusion import DiffusionConfig
from training.policies.diffusion.schedulers import DdpmScheduler
from training.policies.diffusion.unet import ConditionalUnet1d
from training.policies.history import ActionQueue, ObservationHistory
from training.policies.vision.encoders import KeypointEncoder


class DiffusionPolicy(Policy):
    name = "diffusion"
    normalization = "min_max"
    config: DiffusionConfig

    def __init__(self, config: DiffusionConfig, features: PolicyFeatures, stats: dict[str, dict[str, Tensor]] | None):
        super().__init__(config, features, stats)
        per_step = sum(features.observation.values())
        self.image_encoder: KeypointEncoder | None = None
        if self.cameras is not None:
            self.image_encoder = KeypointEncoder(
                config.vision_backbone,
                config.backbone_norm(),
                self.cameras.crop_hw,
                config.spatial_softmax_num_keypoints,
            )
            per_step += len(self.image_keys) * self.image_encoder.out_dim
        self.unet = ConditionalUnet1d(
            action_dim=features.action_dim,
            global_cond_dim=config.n_obs_steps * per_step,
            down_dims=config.down_dims,
            kernel_size=config.kernel_size,
            n_groups=config.n_groups,
            step_embed_dim=config.diffusion_step_embed_dim,
            film_scale=config.use_film_scale_modulation,
        )
        self.noise_scheduler = DdpmScheduler(
            config.num_train_timesteps, config.beta_schedule, config.beta_start, config.beta_end
        )
        self._history = ObservationHistory(config.n_obs_steps)
        self._queue = ActionQueue()

    def _global_condition(self, observations: dict[str, Tensor]) -> Tensor:
        """{key: (B, n_obs_steps, dim)} unnormalised -> (B, n_obs_steps * total_dim) normalised, flattened."""
        for key in self.input_keys:
            if observations[key].shape[1] != self.config.n_obs_steps:
                raise ValueError(
                    f"{key!r} has {observations[key].shape[1]} observation frames, the policy needs n_obs_steps = "
                    f"{self.config.n_obs_steps}"
                )
        parts = [self.normalizer.normalize(key, observations[key]) for key in self.observation_keys]
        if self.image_encoder is not None:
            parts.append(self.encode_camera_history(observations, self.image_encoder))
        return torch.cat(parts, dim=-1).flatten(start_dim=1)

    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        global_cond = self._global_condition(batch)
        clean = self.normalizer.normalize(ACTION_KEY, batch[ACTION_KEY])
        noise = torch.randn_like(clean)
        timesteps = torch.randint(0, self.config.num_train_timesteps, (clean.shape[0],), device=clean.device)
        predicted_noise = self.unet(self.noise_scheduler.add_noise(clean, noise, timesteps), timesteps, global_cond)
        squared_error = (predicted_noise - noise).pow(2)
        if self.config.do_mask_loss_for_padding:
            valid = (~batch[f"{ACTION_KEY}_is_pad"].bool()).unsqueeze(-1).to(squared_error.dtype)
            loss = (squared_error * valid).sum() / (valid.sum() * squared_error.shape[-1]).clamp_min(1.0)
        else:
            loss = squared_error.mean()
        return loss, {"mse": loss.item()}

    @torch.no_grad()
    def generate_actions(
        self, observation_batch: dict[str, Tensor], generator: torch.Generator | None = None
    ) -> Tensor:
        """Observation history {key: (B, n_obs_steps, dim)}, unnormalised -> sampled actions (B, horizon, A),
        unnormalised. The same generator seed gives the same actions."""
        device = self.noise_scheduler.alphas_cumprod.device
        observations = {key: torch.as_tensor(observation_batch[key]).to(device=device) for key in self.input_keys}
        for key in self.observation_keys:
            observations[key] = observations[key].float()
        global_cond = self._global_condition(observations)
        shape = (global_cond.shape[0], self.config.horizon, self.features.action_dim)
        # Draw the noise where the generator lives (it may be a CPU generator for a GPU policy), then move it.
        noise_device = generator.device if generator is not None else device
        initial_noise = torch.randn(shape, generator=generator, device=noise_device).to(device)
        normalized = self.noise_scheduler.ddim_sample(
            lambda sample, timesteps: self.unet(sample, timesteps, global_cond),
            initial_noise,
            self.config.num_inference_steps,
            self.config.clip_sample_range if self.config.clip_sample else None,
        )
        return self.normalizer.unnormalize(ACTION_KEY, normalized)

    def reset(self) -> None:
        self._history.reset()
        self._queue.reset()

    @torch.no_grad()
    def select_action(self, observation: dict[str, Tensor]) -> Tensor:
        window = self._history.push(observation, self.input_keys, self.noise_scheduler.alphas_cumprod.device)
        if len(self._queue) == 0:
            actions = self.generate_actions(window)
            start = self.config.n_obs_steps - 1
            self._queue.extend(actions[:, start : start + self.config.n_action_steps])
        return self._queue.pop()
