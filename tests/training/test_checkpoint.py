import json
import os

import pytest
import torch

from tests.training.helpers import PUSH2D_FEATURES, unit_stats
from training.checkpoint import (
    CHECKPOINTS_DIR,
    best_evaluated,
    find_resume_checkpoint,
    load_policy,
    point_last,
    prune_checkpoints,
    read_last,
    save_checkpoint,
)
from training.errors import CheckpointError
from training.optim import make_optimizer, make_scheduler, scheduler_state_to_json
from training.policies import make_policy
from training.policies.mlp.configuration_mlp import MlpConfig
from training.spec import TrainSpec

SPEC = TrainSpec.model_validate(
    {"policy": {"type": "mlp", "hidden_dims": [16, 16]}, "dataset": {"uri": "builtin://push2d?episodes=4"}}
)


def _save(run_dir, step, policy):
    optimizer = make_optimizer(policy, 1e-3, 0.0, (0.9, 0.999))
    scheduler = make_scheduler(optimizer, 0, 10)
    return save_checkpoint(
        run_dir,
        step,
        spec=SPEC,
        policy=policy,
        stats=unit_stats(),
        optimizer_state=optimizer.state_dict(),
        scheduler_state=scheduler_state_to_json(scheduler),
        rng_state={"torch": torch.get_rng_state()},
    )


@pytest.fixture
def policy():
    torch.manual_seed(0)
    return make_policy(SPEC.policy, PUSH2D_FEATURES, unit_stats())


def test_layout_follows_lerobot_and_last_is_a_relative_symlink(tmp_path, policy):
    path = _save(tmp_path, 5, policy)
    assert path == tmp_path / CHECKPOINTS_DIR / "000005"
    for rel in (
        "pretrained_model/config.json",
        "pretrained_model/model.safetensors",
        "pretrained_model/normalization_stats.safetensors",
        "pretrained_model/train_config.json",
        "training_state/optimizer_state.pt",
        "training_state/scheduler_state.json",
        "training_state/rng_state.pt",
        "training_state/training_step.json",
    ):
        assert (path / rel).is_file(), rel
    last = tmp_path / CHECKPOINTS_DIR / "last"
    assert last.is_symlink() and os.readlink(last) == "000005"
    config = json.loads((path / "pretrained_model/config.json").read_text())
    assert config["type"] == "mlp" and config["features"]["action_dim"] == 2


@pytest.mark.parametrize("form", ["run_dir", "checkpoint_dir", "pretrained_dir"])
def test_load_policy_accepts_each_path_form(tmp_path, policy, form):
    _save(tmp_path, 1, policy)
    with torch.no_grad():
        policy.network[0].weight.add_(1.0)
    newest = _save(tmp_path, 2, policy)
    path = {"run_dir": tmp_path, "checkpoint_dir": newest, "pretrained_dir": newest / "pretrained_model"}[form]
    loaded = load_policy(path)
    assert not loaded.training
    assert list(loaded.features.observation) == list(policy.features.observation)  # concatenation order
    for name, value in policy.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name


def test_load_policy_refuses_a_directory_that_is_not_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="is not a checkpoint"):
        load_policy(tmp_path)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_policy(tmp_path / "missing")


def test_interrupted_write_leaves_last_on_the_previous_complete_checkpoint(tmp_path, policy, monkeypatch):
    _save(tmp_path, 1, policy)

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("training.checkpoint.torch.save", crash)
    with pytest.raises(OSError, match="disk full"):
        _save(tmp_path, 2, policy)
    checkpoints = tmp_path / CHECKPOINTS_DIR
    assert read_last(checkpoints) == "000001"
    assert not (checkpoints / "000002").exists()
    assert find_resume_checkpoint(tmp_path) == checkpoints / "000001"


def test_corrupt_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, policy):
    first = _save(tmp_path, 1, policy)
    newest = _save(tmp_path, 2, policy)
    model = newest / "pretrained_model/model.safetensors"
    model.write_bytes(model.read_bytes()[:100])  # truncated, as a partial sync to a volume would leave it
    logged = []
    assert find_resume_checkpoint(tmp_path, logged.append) == first
    assert "truncated" in logged[0]
    first_model = first / "pretrained_model/model.safetensors"
    first_model.write_bytes(b"x" + first_model.read_bytes()[1:])
    with pytest.raises(CheckpointError, match="no complete checkpoint"):
        find_resume_checkpoint(tmp_path)


def test_last_may_be_a_plain_text_file_naming_the_step(tmp_path, policy):
    _save(tmp_path, 1, policy)
    checkpoints = tmp_path / CHECKPOINTS_DIR
    (checkpoints / "last").unlink()
    (checkpoints / "last").write_text("000001\n")
    assert find_resume_checkpoint(tmp_path) == checkpoints / "000001"
    assert load_policy(tmp_path).features == PUSH2D_FEATURES


def test_last_falls_back_to_a_text_file_where_symlinks_fail(tmp_path, monkeypatch):
    (tmp_path / "000003").mkdir()

    def no_symlinks(*args, **kwargs):
        raise OSError("operation not permitted")

    monkeypatch.setattr("training.checkpoint.os.symlink", no_symlinks)
    point_last(tmp_path, "000003")
    assert not (tmp_path / "last").is_symlink()
    assert read_last(tmp_path) == "000003"


def test_a_run_without_checkpoints_has_nothing_to_resume(tmp_path):
    assert find_resume_checkpoint(tmp_path) is None


def test_policy_config_survives_the_round_trip(tmp_path):
    torch.manual_seed(0)
    config = MlpConfig(hidden_dims=(8,), n_obs_steps=3)
    policy = make_policy(config, PUSH2D_FEATURES, unit_stats())
    _save(tmp_path, 1, policy)
    assert load_policy(tmp_path).config == config


def test_pruning_keeps_the_newest_the_last_and_the_best_evaluated(tmp_path, policy):
    for step in (10, 20, 30, 40, 50):
        _save(tmp_path, step, policy)
    (tmp_path / "eval").mkdir()
    for step, success in ((20, 90.0), (30, 40.0), (50, 10.0)):
        (tmp_path / "eval" / f"eval_info_{step:06d}.json").write_text(json.dumps({"pc_success": success}))
    (tmp_path / "eval" / "eval_info_000040.json").write_text("{cut short")  # a crash mid-write ranks nowhere
    assert prune_checkpoints(tmp_path, keep_last=2) == ["000010", "000030"]
    kept = sorted(p.name for p in (tmp_path / CHECKPOINTS_DIR).iterdir() if p.name.isdigit())
    assert kept == ["000020", "000040", "000050"] and read_last(tmp_path / CHECKPOINTS_DIR) == "000050"
    assert best_evaluated(tmp_path) == "000020"
    assert find_resume_checkpoint(tmp_path) == tmp_path / CHECKPOINTS_DIR / "000050"
