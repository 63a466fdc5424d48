"""The project's error base class: an error a user can fix, reported as one line."""


class AvferError(Exception):
    """Bad input or config; the message names the file or key and the problem."""
