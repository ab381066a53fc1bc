"""The one error type for problems a person caused and can fix.

Its message is shown as is: the GUI puts it in a dialog, the CLI prints it and exits 2.
"""


class LatentStudioError(Exception):
    """A problem the user can act on (bad input, missing model, unavailable device)."""


class InvalidRequest(LatentStudioError):
    """A request field is out of range; the message says which and what is allowed."""
