from __future__ import annotations

import pytest
import torch

from tests.training.policies.synthetic import FEATURES, SyntheticTask, small_config
from training.policies import make_policy
from training.policies.diffusion.modeling_diffusion import DiffusionPolicy
from training.policies.diffusion.schedulers import DdpmScheduler, make_betas
from training.policies.diffusion.unet import ConditionalUnet1d


def _policy(**overrides) -> tuple[DiffusionPolicy, SyntheticTask, torch.Generator]:
    config = small_config("diffusion", **overrides)
    task = SyntheticTask()
    generator = torch.Generator().manual_seed(0)
    policy = make_policy(config, FEATURES, task.stats(config, generator))
    assert isinstance(policy, DiffusionPolicy)
    return policy.eval(), task, generator


def _history(policy: DiffusionPolicy, batch_size: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    n_obs = policy.config.n_obs_steps
    return {k: torch.randn(batch_size, n_obs, d, generator=generator) * 5 for k, d in FEATURES.observation.items()}


@pytest.mark.parametrize("schedule", ["squaredcos_cap_v2", "linear"])
def test_alpha_bar_falls_strictly_and_stays_inside_zero_one(schedule: str) -> None:
    betas = make_betas(schedule, 100, 1e-4, 0.02)
    assert (betas > 0).all() and (betas <= 0.999).all()
    alpha_bar = DdpmScheduler(100, schedule).alphas_cumprod
    assert alpha_bar.shape == (100,)
    assert (alpha_bar > 0).all() and (alpha_bar < 1).all()
    assert (alpha_bar[1:] < alpha_bar[:-1]).all()


def test_squaredcos_alpha_bar_follows_the_cosine_curve() -> None:
    alpha_bar = DdpmScheduler(1000, "squaredcos_cap_v2").alphas_cumprod.double()
    t = torch.tensor([100, 500, 900])
    f = lambda s: torch.cos((s + 0.008) / 1.008 * torch.pi / 2) ** 2  # noqa: E731
    expected = f((t + 1).double() / 1000) / f(torch.tensor(0.0, dtype=torch.float64))
    torch.testing.assert_close(alpha_bar[t], expected, rtol=1e-4, atol=1e-6)


def test_add_noise_has_the_forward_process_mean_and_variance() -> None:
    scheduler = DdpmScheduler(100, "squaredcos_cap_v2")
    generator = torch.Generator().manual_seed(0)
    clean = torch.full((20000, 1), 0.7)
    noise = torch.randn(20000, 1, generator=generator)
    for t in (0, 50, 99):
        noisy = scheduler.add_noise(clean, noise, torch.full((20000,), t))
        alpha_bar = scheduler.alphas_cumprod[t]
        assert noisy.mean().item() == pytest.approx((alpha_bar.sqrt() * 0.7).item(), abs=0.03)
        assert noisy.var().item() == pytest.approx((1 - alpha_bar).item(), abs=0.03)


def test_ddim_with_an_exact_noise_oracle_recovers_the_clean_sample() -> None:
    scheduler = DdpmScheduler(100, "squaredcos_cap_v2")
    clean = torch.rand(3, 8, 2) * 1.6 - 0.8

    def oracle(sample: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        alpha_bar = scheduler.alphas_cumprod[timesteps].view(-1, 1, 1)
        return (sample - alpha_bar.sqrt() * clean) / (1 - alpha_bar).sqrt()

    assert scheduler.ddim_timesteps(10) == [90, 80, 70, 60, 50, 40, 30, 20, 10, 0]
    result = scheduler.ddim_sample(oracle, torch.randn(3, 8, 2), 10, clip_range=1.0)
    torch.testing.assert_close(result, clean, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(("down_dims", "film_scale"), [((8,), True), ((8, 16, 32), False)])
def test_unet_maps_the_action_window_to_its_own_shape(down_dims: tuple[int, ...], film_scale: bool) -> None:
    unet = ConditionalUnet1d(3, 10, down_dims, kernel_size=3, n_groups=4, step_embed_dim=9, film_scale=film_scale)
    out = unet(torch.randn(2, 8, 3), torch.tensor([0, 99]), torch.randn(2, 10))
    assert out.shape == (2, 8, 3)


def test_unet_output_depends_on_the_global_condition_and_the_step() -> None:
    unet = ConditionalUnet1d(2, 4, (8, 16), kernel_size=3, n_groups=4, step_embed_dim=8, film_scale=True)
    sample, cond = torch.randn(1, 4, 2), torch.randn(1, 4)
    base = unet(sample, torch.tensor([5]), cond)
    assert not torch.allclose(base, unet(sample, torch.tensor([5]), cond + 1))
    assert not torch.allclose(base, unet(sample, torch.tensor([60]), cond))


def test_generate_actions_has_the_horizon_shape_stays_inside_the_action_range_and_follows_the_seed() -> None:
    policy, task, generator = _policy(clip_sample_range=1.0)
    history = _history(policy, 4, generator)
    actions = policy.generate_actions(history, torch.Generator().manual_seed(3))
    assert actions.shape == (4, policy.config.horizon, FEATURES.action_dim)
    normalized = policy.normalizer.normalize("action", actions)
    assert normalized.abs().max().item() <= 1.0 + 1e-5
    again = policy.generate_actions(history, torch.Generator().manual_seed(3))
    other = policy.generate_actions(history, torch.Generator().manual_seed(4))
    torch.testing.assert_close(actions, again, rtol=0, atol=0)
    assert not torch.allclose(actions, other)


def test_a_smaller_clip_range_bounds_the_normalised_output() -> None:
    policy, _, generator = _policy(clip_sample_range=0.25)
    actions = policy.generate_actions(_history(policy, 4, generator), torch.Generator().manual_seed(0))
    assert policy.normalizer.normalize("action", actions).abs().max().item() <= 0.25 + 1e-5


def test_select_action_runs_n_action_steps_from_the_current_frame_then_samples_again() -> None:
    policy, _, generator = _policy(n_obs_steps=2, horizon=8, n_action_steps=3)
    first = {k: torch.randn(2, d, generator=generator) for k, d in FEATURES.observation.items()}
    torch.manual_seed(11)
    expected = policy.generate_actions({k: v.unsqueeze(1).expand(-1, 2, -1) for k, v in first.items()})
    policy.reset()
    torch.manual_seed(11)
    executed = [policy.select_action(first)]
    for _ in range(2):
        executed.append(policy.select_action({k: torch.randn(2, d) for k, d in FEATURES.observation.items()}))
    # Index n_obs_steps - 1 = 1 of the window is the current frame.
    torch.testing.assert_close(torch.stack(executed, dim=1), expected[:, 1:4])
    state = torch.get_rng_state()
    policy.select_action(first)
    assert not torch.equal(state, torch.get_rng_state())  # the queue ran dry, so it sampled a new window


def test_masked_loss_is_the_mean_squared_error_over_unpadded_steps_only() -> None:
    # Padded steps still enter the UNet as (noisy) input, as in the reference; only their error is left out.
    policy, task, generator = _policy(do_mask_loss_for_padding=True)
    batch = task.batch(policy.config, 4, generator)
    batch["action_is_pad"][:, 6:] = True
    torch.manual_seed(5)
    loss, _ = policy(batch)

    torch.manual_seed(5)  # replay forward's draws: the noise, then the timesteps
    clean = policy.normalizer.normalize("action", batch["action"])
    noise = torch.randn_like(clean)
    timesteps = torch.randint(0, policy.config.num_train_timesteps, (4,))
    with torch.no_grad():
        cond = policy._global_condition(batch)
        predicted = policy.unet(policy.noise_scheduler.add_noise(clean, noise, timesteps), timesteps, cond)
    expected = (predicted - noise)[:, :6].pow(2).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert loss.item() != pytest.approx((predicted - noise).pow(2).mean().item(), rel=1e-3)
