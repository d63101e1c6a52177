"""User-facing errors: one line that names the file, key or argument and what was expected.

Raise `UserError` for anything the user can fix (bad input, missing data, bad config).
The command line prints it as a single line and exits with status 2, never a traceback.
"""


class UserError(Exception):
    """An error caused by user input; its message is shown as one line."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split("\n")).strip())


class DataError(UserError):
    """A dataset is missing, incomplete or corrupt."""


class CorruptFileError(UserError):
    """A file on disk (checkpoint, genotype, arch state, dataset) is truncated or tampered."""


class TrainingDivergedError(UserError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""

    exit_code = 3
