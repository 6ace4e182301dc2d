"""Typed errors that say what went wrong and how to fix it.

Every error a user can cause (bad input, missing file, wrong checksum, failing tool) is a
`ZooflowError`; the CLI prints its message and exits non-zero without a traceback.
"""

from __future__ import annotations


class ZooflowError(Exception):
    """Base class: `problem` says what is wrong, `fix` what to do about it."""

    def __init__(self, problem: str, fix: str | None = None) -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(problem if not fix else f"{problem}\n  fix: {fix}")

    def __reduce__(self) -> tuple[object, ...]:
        # Keep both parts when the error crosses a process boundary (Prefect, Dask).
        return (self.__class__, (self.problem, self.fix))


class ConfigError(ZooflowError):
    """A run's parameters are invalid; raised before any work starts."""


class UnknownModelError(ConfigError):
    """The model name is not in mmcls's model index."""


class StoreError(ZooflowError):
    """The artifact store cannot be used (unwritable, missing, corrupt)."""


class ArtifactNotFoundError(StoreError):
    """A reference names no artifact in the store."""


class FetchError(ZooflowError):
    """A checkpoint could not be obtained."""


class ChecksumError(FetchError):
    """Downloaded bytes do not have the expected SHA-256."""

    def __init__(self, problem: str, fix: str | None = None, *, expected: str = "", actual: str = "") -> None:
        super().__init__(problem, fix)
        self.expected = expected
        self.actual = actual

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_checksum_error, (self.problem, self.fix, self.expected, self.actual))


def _rebuild_checksum_error(problem: str, fix: str | None, expected: str, actual: str) -> ChecksumError:
    return ChecksumError(problem, fix, expected=expected, actual=actual)


class CheckpointError(ZooflowError):
    """A checkpoint does not fit the model (missing / unexpected keys, wrong shapes)."""


class ExportError(ZooflowError):
    """ONNX export or its verification failed."""


class DatasetError(ZooflowError):
    """A dataset is missing, malformed, or holds images that cannot be used."""


class WorkerError(ZooflowError):
    """A worker process died (killed, out of memory); finished work is kept."""


class DiskFullError(StoreError):
    """No space left where zooflow was writing; what finished before is kept."""


class DamagedRecordError(StoreError):
    """A small store record (version, alias, manifest) cannot be read; names the file and the repair."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint needs full unpickling (which can run code) and the user has not opted in."""
