"""Every error privcodec raises on bad input is a PrivcodecError.

The CLI prints ``Error: <message>`` for these and exits non-zero; anything
else is a bug.  Messages about authenticated data are deliberately constant
(see SECURITY.md): they say *that* a check failed, not which byte or key.
"""


class PrivcodecError(Exception):
    """Base class: a clean, user-facing error."""


class ImageError(PrivcodecError):
    """The input image cannot be read or is not acceptable."""


class PolicyError(PrivcodecError):
    """A policy file is invalid. The message names the file, the rule and the problem."""


class KeyFileError(PrivcodecError):
    """A key file is missing, unreadable or malformed."""


class FormatError(PrivcodecError):
    """A .prvc file is truncated, corrupted, tampered with or of an unknown version."""


class DecryptionError(PrivcodecError):
    """A key does not open what it was asked to open."""


class DetectorError(PrivcodecError):
    """A detector cannot run (missing weights, missing package, bad input)."""


class OutputExistsError(PrivcodecError):
    """An output file exists and --force was not given."""
