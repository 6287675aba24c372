"""Errors the training library raises on purpose. Each carries a stable `code` that callers (the service, the CLI)
turn into a job error or a one-line message instead of a traceback."""


class TrainingError(Exception):
    """Training could not run or finish for a reason worth telling the user."""

    code = "training_error"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class DatasetError(TrainingError):
    """The dataset is missing, malformed, or unusable with this policy. The message says what and where."""

    code = "dataset_invalid"


class CheckpointError(TrainingError):
    """A checkpoint on disk is missing, truncated or does not match the spec it is resumed with."""

    code = "checkpoint_invalid"


class EnvironmentError_(TrainingError):  # noqa: N801 - avoid shadowing the builtin EnvironmentError
    """The evaluation environment is unknown or does not match the dataset's features."""

    code = "eval_env_invalid"


class DatasetAccessDenied(DatasetError):
    """The dataset URI names a source this run may not read (a file outside the allowed roots, an unlisted bucket,
    another owner's upload). The message names the rule, never what exists beyond it."""

    code = "dataset_forbidden"


class LimitExceeded(TrainingError):
    """The run would exceed a limit its operator set (model size, batch size, storage, ...)."""

    code = "limit_exceeded"
