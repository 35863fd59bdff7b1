"""The one exception type for bad input: the CLI prints its message and exits non-zero."""


class InputError(Exception):
    """Bad input from the user (file, line, flag, checkpoint); the message says what and where."""
