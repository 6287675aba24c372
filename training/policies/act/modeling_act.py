"""ACT: a CVAE whose decoder is a transformer that predicts a chunk of actions.

Policy transformer: the encoder reads a latent token (z projected), one token per vector observation feature (with
learned positions) and, per camera, one token per position of the backbone's feature map (projected by a 1x1
convolution, with fixed 2-D sinusoidal positions), as LeRobot's ACT does; the decoder turns `chunk_size` learned
queries into actions, cross-attending to the encoder output. During training a separate transformer encoder over
[CLS, state (when the data has vector observations), action chunk] (padded steps masked out) gives mu and
log-variance of z; at inference z = 0. Everything is z-scored (std clipped to >= 1e-2, as ACT does).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from training.data.dataset import ACTION_KEY, PolicyFeatures
from training.policies.act.configuration_act import ActConfig
from training.policies.base import Policy
from training.policies.history import ActionQueue
from training.policies.vision.encoders import FeatureMapEncoder


def _encoder(config: ActConfig, n_layers: int) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(
        config.dim_model, config.n_heads, config.dim_feedforward, config.dropout, activation="relu", batch_first=True
    )
    return nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)


class ActTemporalEnsembler:
    """Online weighted average of every chunk prediction made for the current step.

    The i-th prediction for a time step (i = 0 the oldest) has weight w_i = exp(-coeff * i). Rather than storing all
    chunks, it keeps for each future step the running weighted mean and how many predictions it holds, and folds a new
    prediction in as mean' = (mean * sum_{j<n} w_j + x * w_n) / sum_{j<=n} w_j.
    """

    def __init__(self, coeff: float, chunk_size: int):
        self.chunk_size = chunk_size
        self.weights = torch.exp(-coeff * torch.arange(chunk_size, dtype=torch.float64))
        self.cumulative_weights = torch.cumsum(self.weights, dim=0)
        self.reset()

    def reset(self) -> None:
        self._mean: Tensor | None = None  # (B, steps ahead, A)
        self._counts: Tensor | None = None  # (steps ahead,) predictions folded into each step

    def update(self, chunk: Tensor) -> Tensor:
        """Fold in a chunk (B, chunk_size, A) predicted at the current step; return the action to run now (B, A)."""
        if chunk.shape[1] != self.chunk_size:
            raise ValueError(f"expected a chunk of {self.chunk_size} steps, got {chunk.shape[1]}")
        weights = self.weights.to(chunk.device, chunk.dtype)
        cumulative = self.cumulative_weights.to(chunk.device, chunk.dtype)
        if self._mean is None or self._counts is None:
            self._mean = chunk.clone()
            self._counts = torch.ones(self.chunk_size, dtype=torch.long, device=chunk.device)
        else:
            counts = self._counts  # the chunk's first chunk_size - 1 steps overlap the held ones
            new_weight = weights[counts].view(1, -1, 1)
            total_before = cumulative[counts - 1].view(1, -1, 1)
            total_after = cumulative[counts].view(1, -1, 1)
            overlap = (self._mean * total_before + chunk[:, :-1] * new_weight) / total_after
            self._mean = torch.cat([overlap, chunk[:, -1:]], dim=1)
            self._counts = torch.cat([(counts + 1).clamp_max(self.chunk_size - 1), counts.new_ones(1)])
        action = self._mean[:, 0]
        self._mean, self._counts = self._mean[:, 1:], self._counts[1:]
        return action


class ActPolicy(Policy):
    name = "act"
    normalization = "mean_std"
    config: ActConfig

    def __init__(self, config: ActConfig, features: PolicyFeatures, stats: dict[str, dict[str, Tensor]] | None):
        super().__init__(config, features, stats)
        d = config.dim_model
        state_dim = sum(features.observation.values())

        # CVAE encoder: [CLS, state, a_0 .. a_{k-1}] -> (mu, logvar); no state token without vector observations.
        if config.use_vae:
            self.vae_cls_embed = nn.Parameter(torch.randn(1, 1, d) * 0.02)
            if state_dim:
                self.vae_state_proj = nn.Linear(state_dim, d)
            self.vae_action_proj = nn.Linear(features.action_dim, d)
            self.vae_pos_embed = nn.Parameter(torch.randn(1, 1 + int(state_dim > 0) + config.chunk_size, d) * 0.02)
            self.vae_encoder = _encoder(config, config.n_vae_encoder_layers)
            self.vae_latent_head = nn.Linear(d, 2 * config.latent_dim)

        # Policy transformer.
        self.observation_projs = nn.ModuleList(nn.Linear(dim, d) for dim in features.observation.values())
        self.latent_proj = nn.Linear(config.latent_dim, d)
        self.encoder_pos_embed = nn.Parameter(torch.randn(1, 1 + len(self.observation_keys), d) * 0.02)
        self.image_encoder: FeatureMapEncoder | None = None
        if self.cameras is not None:
            self.image_encoder = FeatureMapEncoder(
                config.vision_backbone, config.backbone_norm(), self.cameras.crop_hw, config.dim_model
            )
        self.encoder = _encoder(config, config.n_encoder_layers)
        decoder_layer = nn.TransformerDecoderLayer(
            d, config.n_heads, config.dim_feedforward, config.dropout, activation="relu", batch_first=True
        )
        self.decoder = nn.TransformerDecoder(decoder_layer, config.n_decoder_layers)
        self.query_embed = nn.Parameter(torch.randn(1, config.chunk_size, d) * 0.02)
        self.decoder_pos_embed = nn.Parameter(torch.randn(1, config.chunk_size, d) * 0.02)
        self.action_head = nn.Linear(d, features.action_dim)

        self._queue = ActionQueue()
        self._ensembler = (
            ActTemporalEnsembler(config.temporal_ensemble_coeff, config.chunk_size)
            if config.temporal_ensemble_coeff is not None
            else None
        )

    def _normalized_observations(self, observations: dict[str, Tensor]) -> list[Tensor]:
        """{key: (B, 1, dim)} -> [ (B, dim) normalised, one per vector feature ] at the current frame."""
        return [self.normalizer.normalize(key, observations[key][:, -1]) for key in self.observation_keys]

    def _image_tokens(self, frames: dict[str, Tensor]) -> Tensor | None:
        """{camera: (B, C, H, W)} at the current frame -> (B, cameras * tokens, d) with positions added."""
        if self.image_encoder is None:
            return None
        tokens = [
            self.image_encoder(self.camera_inputs(key, frames[key])) + self.image_encoder.positions
            for key in self.image_keys
        ]
        return torch.cat(tokens, dim=1)

    def _encode_latent(self, state: Tensor | None, actions: Tensor, action_is_pad: Tensor) -> tuple[Tensor, Tensor]:
        batch_size = actions.shape[0]
        parts = [self.vae_cls_embed.expand(batch_size, -1, -1)]
        if state is not None:
            parts.append(self.vae_state_proj(state).unsqueeze(1))
        parts.append(self.vae_action_proj(actions))
        tokens = torch.cat(parts, dim=1) + self.vae_pos_embed
        prefix = len(parts) - 1  # CLS (and state) are never padding
        key_padding_mask = torch.cat([action_is_pad.new_zeros(batch_size, prefix), action_is_pad], dim=1)
        encoded = self.vae_encoder(tokens, src_key_padding_mask=key_padding_mask)
        mu, logvar = self.vae_latent_head(encoded[:, 0]).chunk(2, dim=-1)
        return mu, logvar

    def _decode(self, observation_parts: list[Tensor], image_tokens: Tensor | None, z: Tensor) -> Tensor:
        """Normalised vector observations, image tokens and latent z (B, latent_dim) -> normalised action chunk
        (B, chunk_size, A)."""
        tokens = [self.latent_proj(z)] + [
            proj(part) for proj, part in zip(self.observation_projs, observation_parts, strict=True)
        ]
        sequence = torch.stack(tokens, dim=1) + self.encoder_pos_embed
        if image_tokens is not None:
            sequence = torch.cat([sequence, image_tokens], dim=1)
        memory = self.encoder(sequence)
        queries = (self.query_embed + self.decoder_pos_embed).expand(z.shape[0], -1, -1)
        return self.action_head(self.decoder(queries, memory))

    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        observation_parts = self._normalized_observations(batch)
        image_tokens = self._image_tokens({key: batch[key][:, -1] for key in self.image_keys})
        actions = self.normalizer.normalize(ACTION_KEY, batch[ACTION_KEY])
        action_is_pad = batch[f"{ACTION_KEY}_is_pad"].bool()
        batch_size = actions.shape[0]
        if self.config.use_vae:
            state = torch.cat(observation_parts, dim=-1) if observation_parts else None
            mu, logvar = self._encode_latent(state, actions, action_is_pad)
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
            # KL(N(mu, sigma) || N(0, 1)), summed over latent dims, averaged over the batch.
            kld = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp())).sum(dim=-1).mean()
        else:
            z = actions.new_zeros(batch_size, self.config.latent_dim)
            kld = actions.new_zeros(())
        predicted = self._decode(observation_parts, image_tokens, z)
        valid = (~action_is_pad).unsqueeze(-1).to(predicted.dtype)
        # Mean over the valid (unpadded) entries only.
        l1 = ((predicted - actions).abs() * valid).sum() / (valid.sum() * predicted.shape[-1]).clamp_min(1.0)
        loss = l1 + self.config.kl_weight * kld
        return loss, {"l1_loss": l1.item(), "kld_loss": kld.item()}

    @torch.no_grad()
    def predict_action_chunk(self, observation: dict[str, Tensor]) -> Tensor:
        """One time step {key: (B, dim) or (B, C, H, W)} -> unnormalised chunk (B, chunk_size, A), with z = 0."""
        device = self.query_embed.device
        parts = [
            self.normalizer.normalize(key, torch.as_tensor(observation[key]).to(device=device, dtype=torch.float32))
            for key in self.observation_keys
        ]
        frames = {key: torch.as_tensor(observation[key]).to(device=device) for key in self.image_keys}
        batch_size = next(iter(frames.values())).shape[0] if frames else parts[0].shape[0]
        z = self.query_embed.new_zeros(batch_size, self.config.latent_dim)
        return self.normalizer.unnormalize(ACTION_KEY, self._decode(parts, self._image_tokens(frames), z))

    def reset(self) -> None:
        self._queue.reset()
        if self._ensembler is not None:
            self._ensembler.reset()

    @torch.no_grad()
    def select_action(self, observation: dict[str, Tensor]) -> Tensor:
        if self._ensembler is not None:
            return self._ensembler.update(self.predict_action_chunk(observation))
        if len(self._queue) == 0:
            self._queue.extend(self.predict_action_chunk(observation)[:, : self.config.n_action_steps])
        return self._queue.pop()
