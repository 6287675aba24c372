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
