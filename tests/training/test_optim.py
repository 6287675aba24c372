import pytest
import torch
from torch import nn

from training.optim import (
    Ema,
    make_optimizer,
    make_scheduler,
    scheduler_state_from_json,
    scheduler_state_to_json,
    warmup_cosine_factor,
)


def test_warmup_rises_linearly_then_cosine_decays_to_zero():
    factors = [warmup_cosine_factor(s, warmup_steps=4, total_steps=14) for s in range(15)]
    assert factors[:4] == pytest.approx([0.2, 0.4, 0.6, 0.8])
    assert factors[4] == pytest.approx(1.0)
    assert factors[9] == pytest.approx(0.5)
    assert factors[14] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in zip(factors[4:], factors[5:], strict=False))


def test_scheduler_state_round_trips_through_json():
    model = nn.Linear(2, 2)
    optimizer = make_optimizer(model, lr=1e-3, weight_decay=0.0, betas=(0.9, 0.999))
    scheduler = make_scheduler(optimizer, warmup_steps=3, total_steps=10)
    for _ in range(5):
        optimizer.step()
        scheduler.step()
    state = scheduler_state_to_json(scheduler)
    fresh_optimizer = make_optimizer(model, lr=1e-3, weight_decay=0.0, betas=(0.9, 0.999))
    fresh = make_scheduler(fresh_optimizer, warmup_steps=3, total_steps=10)
    scheduler_state_from_json(fresh, state)
    fresh_optimizer.load_state_dict(optimizer.state_dict())
    optimizer.step()
    scheduler.step()
    fresh_optimizer.step()
    fresh.step()
    assert fresh.get_last_lr() == scheduler.get_last_lr()


def test_ema_decay_follows_the_power_law_and_first_update_copies():
    model = nn.Linear(3, 1)
    ema = Ema(model, power=0.75, max_decay=0.9999)
    with torch.no_grad():
        model.weight.add_(1.0)
    assert ema.update(model) == 0.0
    assert torch.equal(ema.shadow["weight"], model.weight)
    assert ema.decay() == pytest.approx(1 - 2**-0.75)
    ema.updates = 10**9
    assert ema.decay() == 0.9999


def test_ema_averages_toward_the_weights_and_its_state_restores():
    model = nn.Linear(3, 1)
    ema = Ema(model, power=0.75, max_decay=0.5)
    ema.update(model)
    ema.update(model)
    with torch.no_grad():
        model.weight.fill_(2.0)
    previous = ema.shadow["weight"].clone()
    assert ema.decay() == 0.5  # 1 - 3**-0.75 = 0.56, capped at max_decay
    ema.update(model)
    assert torch.allclose(ema.shadow["weight"], (previous + 2.0) / 2)
    deployed = ema.averaged_state_dict(model)
    assert torch.equal(deployed["weight"], ema.shadow["weight"])
    copy = Ema(nn.Linear(3, 1), power=0.75, max_decay=0.5)
    copy.load_state_dict(ema.state_dict())
    assert copy.updates == 3 and torch.equal(copy.shadow["bias"], ema.shadow["bias"])
