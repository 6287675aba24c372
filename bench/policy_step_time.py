"""Parameter count and training-step time per policy at batch 64 on push2d-sized features, for picking example
configs. Times are printed as ratios to the BC-MLP step measured in the same run (absolute ms depend on the machine
and on how busy it is).

    .venv/bin/python bench/policy_step_time.py [--threads N] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import time

import torch

from training.data.dataset import PolicyFeatures
from training.policies import make_policy
from training.policies.act.configuration_act import ActConfig
from training.policies.configuration_base import PolicyConfigBase
from training.policies.diffusion.configuration_diffusion import DiffusionConfig
from training.policies.mlp.configuration_mlp import MlpConfig

PUSH2D_FEATURES = PolicyFeatures(observation={"observation.state": 2, "observation.environment_state": 4}, action_dim=2)

CANDIDATES: dict[str, PolicyConfigBase] = {
    "mlp hidden (256,256), To=2 [baseline]": MlpConfig(hidden_dims=(256, 256)),
    "act d64 h4 ffn256 enc2 dec1 vae2 chunk10": ActConfig(
        dim_model=64, n_heads=4, dim_feedforward=256, n_encoder_layers=2, n_decoder_layers=1,
        n_vae_encoder_layers=2, chunk_size=10, n_action_steps=10, latent_dim=16,
    ),
    "act d128 h8 ffn512 enc4 dec1 vae4 chunk20": ActConfig(
        dim_model=128, n_heads=8, dim_feedforward=512, n_encoder_layers=4, n_decoder_layers=1,
        n_vae_encoder_layers=4, chunk_size=20, n_action_steps=20, latent_dim=32,
    ),
    "diffusion down (32,64,128) emb32 H16": DiffusionConfig(down_dims=(32, 64, 128), diffusion_step_embed_dim=32),
    "diffusion down (64,128,256) emb64 H16": DiffusionConfig(down_dims=(64, 128, 256), diffusion_step_embed_dim=64),
}  # fmt: skip


def _stats(features: PolicyFeatures) -> dict[str, dict[str, torch.Tensor]]:
    dims = {**features.observation, "action": features.action_dim}
    return {
        k: {"mean": torch.zeros(d), "std": torch.ones(d), "min": -torch.ones(d), "max": torch.ones(d)}
        for k, d in dims.items()
    }


def _batch(config: PolicyConfigBase, features: PolicyFeatures, batch_size: int) -> dict[str, torch.Tensor]:
    n_obs, n_act = len(config.observation_delta_indices), len(config.action_delta_indices)
    batch = {k: torch.randn(batch_size, n_obs, d) for k, d in features.observation.items()}
    batch.update({f"{k}_is_pad": torch.zeros(batch_size, n_obs, dtype=torch.bool) for k in features.observation})
    batch["action"] = torch.randn(batch_size, n_act, features.action_dim)
    batch["action_is_pad"] = torch.zeros(batch_size, n_act, dtype=torch.bool)
    return batch


def _step_ms(config: PolicyConfigBase, batch_size: int, repeats: int) -> tuple[int, float]:
    torch.manual_seed(0)
    policy = make_policy(config, PUSH2D_FEATURES, _stats(PUSH2D_FEATURES))
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-4)
    batch = _batch(config, PUSH2D_FEATURES, batch_size)

    def step() -> None:
        loss, _ = policy(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    return sum(p.numel() for p in policy.parameters()), (time.perf_counter() - start) / repeats * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    baseline_ms = None
    for name, config in CANDIDATES.items():
        params, ms = _step_ms(config, args.batch_size, args.repeats)
        baseline_ms = baseline_ms or ms
        print(f"{name:42s} {params / 1e6:6.3f} M params  {ms:8.1f} ms/step  x{ms / baseline_ms:6.1f} of baseline")


if __name__ == "__main__":
    main()
