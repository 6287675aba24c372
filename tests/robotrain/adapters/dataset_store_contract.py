"""The behaviour every DatasetStore adapter must show, as a reusable pytest class (like store_contract.py).

Subclasses provide `stores`: a fresh, empty (JobStore, DatasetStore) pair on one backend, since "in use" means a job
of the job store names the dataset. The module has no `test_` prefix: pytest collects it through its subclasses.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from robotrain.datasets.errors import DatasetInUse
from robotrain.datasets.models import Dataset, new_dataset_id
from robotrain.errors import InvalidRequest, JobConflict
from robotrain.jobs.models import EventKind, Job, JobChanges, JobStatus, NewEvent, new_job_id, utcnow
from robotrain.jobs.submission import Created, OverStorage, SubmitRequest
from robotrain.ports import DatasetStore, JobStore

BASE_TIME = datetime(2026, 3, 4, 5, 6, 7, 123456, tzinfo=UTC)


def make_dataset(user_id: str = "user_alice", *, created_at: datetime | None = None, size: int = 1000) -> Dataset:
    return Dataset(
        id=new_dataset_id(),
        user_id=user_id,
        name="push2d démo",
        bytes=size,
        episodes=4,
        frames=400,
        features={"action": {"dtype": "float32", "shape": [2], "names": ["x", "y"]}},
        policy_features={"observation": {"observation.state": 2}, "action_dim": 2},
        created_at=created_at or utcnow(),
    )


def job_on(dataset: Dataset, *, user_id: str | None = None, status: JobStatus = JobStatus.QUEUED) -> Job:
    now = utcnow()
    return Job(
        id=new_job_id(),
        user_id=user_id or dataset.user_id,
        name="n",
        status=status,
        spec={"policy": {"type": "mlp"}, "dataset": {"uri": dataset.uri}},
        created_at=now,
        updated_at=now,
    )


class DatasetStoreContract:
    @pytest.fixture
    def stores(self) -> tuple[JobStore, DatasetStore]:
        raise NotImplementedError

    @pytest.fixture
    def datasets(self, stores) -> DatasetStore:
        return stores[1]

    @pytest.fixture
    def jobs(self, stores) -> JobStore:
        return stores[0]

    def test_create_then_get_round_trips_every_field_for_the_owner_only(self, datasets: DatasetStore) -> None:
        dataset = make_dataset(created_at=BASE_TIME)
        assert datasets.create(dataset) == dataset
        assert datasets.get(dataset.id, user_id="user_alice") == dataset
        assert datasets.get(dataset.id, user_id="user_bob") is None
        assert datasets.get(new_dataset_id(), user_id="user_alice") is None
        with pytest.raises(JobConflict):
            datasets.create(dataset.model_copy(update={"user_id": "user_bob"}))

    def test_list_pages_newest_first_with_a_cursor_and_only_the_owners(self, datasets: DatasetStore) -> None:
        mine = [datasets.create(make_dataset(created_at=BASE_TIME + timedelta(seconds=i // 2))) for i in range(5)]
        datasets.create(make_dataset("user_bob"))
        expected = sorted(mine, key=lambda d: (d.created_at, d.id), reverse=True)
        first = datasets.list_datasets(user_id="user_alice", limit=2)
        assert first.data == expected[:2] and first.next_cursor
        second = datasets.list_datasets(user_id="user_alice", limit=2, cursor=first.next_cursor)
        third = datasets.list_datasets(user_id="user_alice", limit=2, cursor=second.next_cursor)
        assert second.data == expected[2:4] and third.data == expected[4:] and third.next_cursor is None
        assert datasets.list_datasets(user_id="user_carol").data == []
        with pytest.raises(InvalidRequest):
            datasets.list_datasets(user_id="user_alice", cursor="not-a-cursor")

    def test_in_use_means_an_unfinished_job_of_the_owner_names_it(self, jobs, datasets) -> None:
        dataset = datasets.create(make_dataset())
        assert not datasets.in_use(dataset.id, user_id="user_alice")
        jobs.create(job_on(dataset, status=JobStatus.SUCCEEDED))
        jobs.create(job_on(dataset, user_id="user_bob"))  # a forged row of another user does not count
        assert not datasets.in_use(dataset.id, user_id="user_alice")
        job = jobs.create(job_on(dataset))
        assert datasets.in_use(dataset.id, user_id="user_alice")
        for status in (JobStatus.STARTING, JobStatus.RUNNING):
            jobs.update(job.id, JobChanges(status=status), expected=JobStatus)
            assert datasets.in_use(dataset.id, user_id="user_alice")
        jobs.update(job.id, JobChanges(status=JobStatus.CANCELLED), expected=JobStatus)
        assert not datasets.in_use(dataset.id, user_id="user_alice")

    def test_delete_refuses_while_in_use_and_only_deletes_the_owners(self, jobs, datasets) -> None:
        dataset = datasets.create(make_dataset())
        job = jobs.create(job_on(dataset))
        with pytest.raises(DatasetInUse):
            datasets.delete(dataset.id, user_id="user_alice")
        assert datasets.get(dataset.id, user_id="user_alice") == dataset
        jobs.update(job.id, JobChanges(status=JobStatus.FAILED), expected=JobStatus)
        assert datasets.delete(dataset.id, user_id="user_bob") is False
        assert datasets.delete(dataset.id, user_id="user_alice") is True
        assert datasets.get(dataset.id, user_id="user_alice") is None
        assert datasets.delete(dataset.id, user_id="user_alice") is False

    def test_usage_adds_datasets_and_the_latest_artifact_measures(self, jobs, datasets) -> None:
        datasets.create(make_dataset(size=1000))
        datasets.create(make_dataset(size=500))
        datasets.create(make_dataset("user_bob", size=7))
        job = jobs.create(job_on(make_dataset()))
        assert datasets.usage_bytes("user_alice") == 1500
        datasets.record_artifact_bytes(job.id, user_id="user_alice", size=300)
        datasets.record_artifact_bytes(job.id, user_id="user_alice", size=200)  # replaces, never adds
        assert datasets.usage_bytes("user_alice") == 1700
        assert datasets.usage_bytes("user_bob") == 7 and datasets.usage_bytes("user_carol") == 0

    def test_a_submit_whose_checkpoints_would_pass_the_users_storage_is_refused_in_the_same_call(
        self, jobs, datasets
    ) -> None:
        datasets.create(make_dataset(size=1000))
        datasets.create(make_dataset("user_bob", size=10_000))  # another user's bytes count for them only

        def submit(needed: int) -> object:
            job = job_on(make_dataset())
            return jobs.submit(
                SubmitRequest(
                    job=job,
                    event=NewEvent(EventKind.STATUS, "queued", {"status": "queued"}),
                    now=job.created_at,
                    rate_per_minute=60,
                    max_unfinished=10,
                    unfinished_statuses=frozenset({JobStatus.QUEUED}),
                    storage_needed_bytes=needed,
                    storage_quota_bytes=1500,
                )
            )

        assert submit(600) == OverStorage(used_bytes=1000)
        assert isinstance(submit(500), Created)  # 1000 + 500 fits exactly
