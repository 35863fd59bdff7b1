"""The one exception type for bad input, and how a command reports it."""

import sys


class InputError(Exception):
    """Bad input from the user (file, line, flag, checkpoint); the message says what and where."""


def exit_code(prog: str, action) -> int:
    """Run ``action()``; on bad input write one line ``prog: error: ...`` to stderr and return 2."""
    try:
        action()
    except InputError as e:
        sys.stderr.write(f"{prog}: error: {e}\n")
        return 2
    return 0
