import json
import os
import subprocess
import sys

import pytest
import torch

from training.cli import main


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)  # the CI cores are shared


def _write(path, data):
    path.write_text(json.dumps(data))
    return path


def test_a_bad_dataset_path_prints_one_line_without_traceback_and_exits_2(tmp_path):
    config = _write(
        tmp_path / "c.json",
        {"policy": {"type": "mlp"}, "dataset": {"uri": f"file://{tmp_path}/nope"}, "training": {"device": "cpu"}},
    )
    command = [sys.executable, "-m", "training", "run", str(config), "--out", str(tmp_path / "out")]
    for extra, expected in (
        (["--file-root", str(tmp_path)], f"dataset directory file://{tmp_path}/nope does not exist"),
        ([], "file:// datasets must lie under a directory the operator allows"),  # the default allows no file://
    ):
        environ = {k: v for k, v in os.environ.items() if k != "ROBOTRAIN_FILE_DATASET_ROOTS"}
        done = subprocess.run(command + extra, capture_output=True, text=True, timeout=120, env=environ)
        assert done.returncode == 2
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
        assert done.stderr.startswith("error: ") and expected in done.stderr


def test_a_bad_spec_names_the_field_on_one_line_and_exits_2(tmp_path, capsys):
    config = _write(
        tmp_path / "c.json",
        {
            "policy": {"type": "mlp", "hidden_dims": []},
            "dataset": {"uri": "builtin://push2d"},
            "training": {"stepz": 3},
        },
    )
    assert main(["run", str(config), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "policy.mlp.hidden_dims" in err and "training.stepz" in err


def test_a_config_that_is_not_json_or_missing_exits_2(tmp_path, capsys):
    (tmp_path / "c.json").write_text("{not json")
    assert main(["run", str(tmp_path / "c.json"), "--out", str(tmp_path / "out")]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    assert main(["run", str(tmp_path / "absent.json"), "--out", str(tmp_path / "out")]) == 2
    assert "cannot read config" in capsys.readouterr().err


def test_a_bad_checkpoint_exits_2(tmp_path, capsys):
    assert main(["eval", str(tmp_path), "--env", "push2d", "--episodes", "2", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not a checkpoint" in err


def test_make_dataset_then_run_then_eval(tmp_path, capsys):
    assert main(["make-dataset", "push2d", "--episodes", "6", "--seed", "3", "--out", str(tmp_path / "ds")]) == 0
    assert (tmp_path / "ds" / "meta" / "info.json").is_file()
    assert "wrote 6 push2d episodes" in capsys.readouterr().out
    config = _write(
        tmp_path / "c.json",
        {
            "policy": {"type": "mlp", "hidden_dims": [16]},
            "dataset": {"uri": f"file://{tmp_path}/ds"},
            "training": {"steps": 4, "batch_size": 8, "device": "cpu", "log_every": 2},
            "eval": {"env": "push2d", "episodes": 3},
        },
    )
    assert main(["run", str(config), "--out", str(tmp_path / "run"), "--file-root", str(tmp_path / "ds")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("done: steps 4/4") and "success" in out and "95% CI" in out
    assert (
        main(
            [
                "eval",
                str(tmp_path / "run" / "checkpoints" / "000004"),
                "--episodes",
                "3",
                "--device",
                "cpu",
                "--json",
                str(tmp_path / "eval.json"),
            ]
        )
        == 0
    )
    assert "over 3 episodes of push2d" in capsys.readouterr().out
    assert len(json.loads((tmp_path / "eval.json").read_text())["per_episode"]) == 3
