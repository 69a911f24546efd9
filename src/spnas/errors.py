"""User-facing errors.

Anything a user can cause (a bad file, a wrong option, a mismatched table) raises ``SpnasError``; the
CLI turns it into one line on stderr and exit code 2, never a traceback.
"""


class SpnasError(Exception):
    """An error in the user's input, reported as one line naming what is wrong and how to fix it."""

    exit_code = 2
