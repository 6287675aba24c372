"""The DatasetFiles port on a local directory: files written are visible at once to every process on the machine."""

from __future__ import annotations

from pathlib import Path


class LocalDatasetFiles:
    def __init__(self, root: Path):
        self.root = Path(root)

    def publish(self) -> None:
        """Nothing to do: the directory is shared by the API and its worker processes."""

    def refresh(self) -> None:
        """Nothing to do: see publish."""
