"""Settings.child_environ: a worker gets its settings and the variables it needs, from allow-lists, and none of the
API's secrets or the server shell's other variables."""

from __future__ import annotations

from pathlib import Path

import pytest

from robotrain.settings import Settings


def test_the_worker_environment_is_built_from_allow_lists(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name, value in {
        "PATH": "/usr/bin",
        "AWS_SECRET_ACCESS_KEY": "for-sqs-and-s3",
        "HF_TOKEN": "hf_for_listed_orgs",
        "LC_ALL": "C.UTF-8",
        "OMP_NUM_THREADS": "1",
        "GITHUB_TOKEN": "the operator's shell",
        "CLERK_SECRET_KEY": "sk_live_api_only",
    }.items():
        monkeypatch.setenv(name, value)
    settings = Settings(
        data_dir=tmp_path,
        internal_token="api-only",
        supabase_url="https://x.supabase.co",
        supabase_key="service-role",
        s3_buckets="robot-data",
        file_dataset_roots=f"{tmp_path}/a,{tmp_path}/b",
        cors_origins="https://app.example",
        weights_dir=tmp_path / "weights",
    )
    environ = settings.child_environ()
    assert environ["PATH"] == "/usr/bin" and environ["AWS_SECRET_ACCESS_KEY"] == "for-sqs-and-s3"
    assert environ["HF_TOKEN"] == "hf_for_listed_orgs" and environ["LC_ALL"] == "C.UTF-8"
    assert environ["SUPABASE_KEY"] == "service-role" and environ["ROBOTRAIN_S3_BUCKETS"] == "robot-data"
    assert environ["ROBOTRAIN_FILE_DATASET_ROOTS"] == f"{tmp_path}/a,{tmp_path}/b"
    assert environ["ROBOTRAIN_DATA_DIR"] == str(tmp_path)
    for secret in ("ROBOTRAIN_INTERNAL_TOKEN", "CLERK_SECRET_KEY", "GITHUB_TOKEN", "ROBOTRAIN_CORS_ORIGINS"):
        assert secret not in environ
    assert "api-only" not in environ.values() and "sk_live_api_only" not in environ.values()
    monkeypatch.setattr("os.environ", environ)
    child = Settings()  # what the worker reads back from that environment
    assert child.s3_buckets == ["robot-data"] and child.internal_token is None and child.max_steps == settings.max_steps
    assert child.weights_dir == tmp_path / "weights"  # pretrained backbones work in local workers too
