"""User-facing errors.

Anything a user can cause (a bad file, a wrong option, a mismatched table) raises ``SpnasError``; the
CLI turns it into one line on stderr and exit code 2, never a traceback.
"""


class SpnasError(Exception):
    """An error in the user's input, reported as one line naming what is wrong and how to fix it."""

    exit_code = 2


class RankLocalError(SpnasError):
    """An error only one replica meets (a file in its share of the data): under torchrun every rank
    that meets it prints it, where errors all ranks meet alike are printed by rank 0 alone."""
