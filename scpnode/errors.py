"""Exceptions that the command line reports as one line instead of a traceback."""


class UsageError(Exception):
    """A user error (bad argument, missing file, unusable input); exit code 2."""
