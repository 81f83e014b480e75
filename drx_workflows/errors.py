"""Errors a user can fix. The CLI prints them as one line and exits non-zero."""


class DrxError(Exception):
    """Bad input or an environment problem, with a message saying how to fix it."""


class StoreLockedError(DrxError):
    """The embedded store is held by another process."""


class StoreCorruptError(DrxError):
    """The embedded store file does not parse."""


class StoreUnreachableError(DrxError):
    """A configured MongoDB server does not answer."""


class ServerDownError(StoreUnreachableError):
    """The server does not answer at all (as opposed to refusing credentials): may come back."""
