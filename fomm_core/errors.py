"""One exception type for mistakes a user can fix (bad input, bad config, missing file).

The CLI prints these as a single line instead of a traceback; anything else is a bug.
"""


class FommError(Exception):
    """A problem with the user's input or environment, with a message saying what to do."""
