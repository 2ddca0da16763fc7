"""The root of streamrec's exception hierarchy.

Every error streamrec raises on purpose derives from :class:`StreamrecError`; its message says what
went wrong and what to do about it. This module imports nothing so every layer can use it
(``stream/errors.py`` adds the Kafka-side errors).
"""


class StreamrecError(Exception):
    """Base class of every error streamrec raises on purpose."""


class ConfigError(StreamrecError):
    """A setting is missing or invalid."""


class InputError(StreamrecError):
    """Input data (an event log, a file, a CLI argument) cannot be used."""


class ArtifactError(StreamrecError):
    """A model artifact is missing, corrupt, or does not match what it claims to be."""
