"""Errors a user can cause and fix; the CLI prints them as one line and exits non-zero."""


class MnistlabError(Exception):
    """Base class for user-facing errors (bad input, missing data, bad options)."""

    exit_code = 2


class DataError(MnistlabError):
    """A dataset file is missing, corrupt, or cannot be fetched."""


class IdxFormatError(DataError):
    """An IDX file is malformed (bad magic, truncated, trailing bytes, ...)."""


class ConfigError(MnistlabError):
    """An option or a combination of options is invalid."""


class OptionError(ConfigError):
    """A model option has a bad value; `option` names it, so a command line can name its
    flag instead."""

    def __init__(self, option: str, problem: str):
        super().__init__(f"{option} {problem}")
        self.option = option
        self.problem = problem


class RunError(MnistlabError):
    """A run directory is missing, not a run, or would be overwritten."""


class TrainingDivergedError(MnistlabError):
    """The training loss became NaN or infinite (a failed run, not a usage error)."""

    exit_code = 1
