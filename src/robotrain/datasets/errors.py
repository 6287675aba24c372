"""Errors of the dataset domain, each with its HTTP status (rendered by the one handler in robotrain.api.errors)."""

from __future__ import annotations

from robotrain.errors import AppError


class DatasetNotFound(AppError):
    """No such dataset, or another user's: the same answer for both."""

    status_code = 404
    code = "dataset_not_found"

    def __init__(self, dataset_id: str):
        super().__init__(f"no dataset {dataset_id!r}")


class DatasetInUse(AppError):
    status_code = 409
    code = "dataset_in_use"

    def __init__(self, dataset_id: str):
        super().__init__(f"dataset {dataset_id} is used by a queued or running job; cancel it or wait for it to end")


class DatasetInvalid(AppError):
    """An upload that is not a readable LeRobot dataset (or not a safe archive). The message names files relative
    to the dataset's root."""

    status_code = 422
    code = "dataset_invalid"


class DatasetForbidden(AppError):
    """A spec names a dataset source its user may not read: the message names the rule."""

    status_code = 422
    code = "dataset_forbidden"


class UnsupportedArchive(AppError):
    status_code = 415
    code = "unsupported_media_type"
