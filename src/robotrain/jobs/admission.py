"""Whether a user may submit a spec: the dataset it names must be one they may read, and the job must fit the
operator's limits (robotrain.tenancy), as far as the spec shows. An upload is resolved for its owner only; its
features come from the upload's record, a builtin's are known, and for file://, s3:// and hf:// sources the size
checks wait for the worker, which has read the dataset. Every refusal is a 422 that names the rule.

What the job's checkpoints will take of the user's storage is estimated here, but checked against what the user
stores inside the submit's one store call (robotrain.jobs.submission), so admitting a spec costs no round trip
unless it names an upload (whose record is read for its features)."""

from __future__ import annotations

from urllib.parse import urlsplit

from robotrain.datasets.errors import DatasetForbidden
from robotrain.errors import InvalidRequest, LimitExceeded
from robotrain.ports import Components
from robotrain.tenancy import dataset_access, training_limits
from training.data.access import UPLOAD_SCHEME, check_access, upload_id
from training.errors import DatasetAccessDenied
from training.spec import TrainSpec, limit_problems


class Admission:
    def __init__(self, components: Components):
        self._settings = components.settings
        self._datasets = components.datasets

    def check(self, user_id: str, spec: TrainSpec) -> int | None:
        """DatasetForbidden, LimitExceeded or InvalidRequest when `user_id` may not run `spec`; otherwise the bytes
        the job's kept checkpoints will need of the user's storage, when the features are known (None otherwise)."""
        from training.data.dataset import PolicyFeatures

        uri = spec.dataset.uri
        parts = urlsplit(uri)
        features: PolicyFeatures | None = None
        if parts.scheme == UPLOAD_SCHEME:
            dataset_id = upload_id(uri)
            dataset = self._datasets.get(dataset_id, user_id=user_id) if self._datasets is not None else None
            if dataset is None:  # the same answer for another user's upload and for no upload at all
                raise DatasetForbidden(f"dataset://{dataset_id} is not one of your uploaded datasets")
            features = PolicyFeatures.from_dict(dataset.policy_features)
        else:
            try:
                check_access(uri, dataset_access(self._settings, owner=user_id))
            except DatasetAccessDenied as refused:
                raise DatasetForbidden(refused.message) from None
            if parts.scheme == "builtin":
                from training.data.inspect import builtin_policy_features

                features = builtin_policy_features(parts.netloc, parts.query)
        limits = training_limits(self._settings)
        problems = limit_problems(spec, limits)
        storage_needed = None
        if features is not None:
            size, storage_needed = self._size_problems(spec, features)
            problems += size
        if problems:
            raise LimitExceeded("; ".join(problems))
        return storage_needed

    def _size_problems(self, spec: TrainSpec, features) -> tuple[list[str], int]:
        """What the policy's and the batch's sizes break of the limits, and the bytes its kept checkpoints need."""
        # torch is imported here, by the first spec with known features (seconds, once per process), never at the
        # API's start: an import beside the event loop would slow every request answered meanwhile.
        from training.policies.size import checkpoint_bytes, count_parameters, size_problems

        limits = training_limits(self._settings)
        try:
            problems = size_problems(spec, limits, features)
            parameters = count_parameters(spec.policy, features)
        except ValueError as error:
            raise InvalidRequest(f"a {spec.policy.type} policy cannot train on this dataset: {error}") from None
        # The checkpoints this job keeps (the last N and the best).
        return problems, checkpoint_bytes(parameters, spec.policy) * (self._settings.checkpoints_kept + 1)
