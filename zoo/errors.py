"""Errors a user can cause. Each carries a message that says what to do.

The command line prints ``str(error)`` and exits non-zero; the app shows it in the
page. Anything that is *not* a ``ZooError`` is a bug and keeps its traceback.
"""

from __future__ import annotations


class ZooError(Exception):
    """Base class: a problem the user can fix, with a message saying how."""


class UnknownModelError(ZooError, KeyError):
    """A model name that is neither built in nor in the user's zoo file."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class ZooFileError(ZooError):
    """A malformed ``--zoo`` TOML file."""


class WeightsUnavailableError(ZooError):
    """The weights cannot be fetched: no network, offline mode, Hub error."""


class NotFoundOnHubError(WeightsUnavailableError):
    """Repo, revision or file does not exist on the Hub."""


class GatedRepoError(WeightsUnavailableError):
    """The repo needs a token or accepted terms."""


class ChecksumError(ZooError):
    """The downloaded file is not the file the registry pins."""


class CorruptWeightsError(ZooError):
    """The file is not a readable safetensors file (truncated, damaged)."""


class ArchitectureMismatchError(ZooError):
    """The weights do not fit the architecture named in the registry."""


class ImageError(ZooError):
    """The input is missing, not an image, or not one we can safely decode."""


class ImageTooLargeError(ImageError):
    """The image's canvas is over the pixel limit, or decoding it ran out of memory."""


class UnknownClassError(ZooError, KeyError):
    """A target class name that is not among the model's labels."""

    def __str__(self) -> str:
        return str(self.args[0])


class UnknownMethodError(ZooError, KeyError):
    """An explanation method that does not exist."""

    def __str__(self) -> str:
        return str(self.args[0])
