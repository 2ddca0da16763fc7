"""Kafka-side errors. The root of the hierarchy is :class:`models.errors.StreamrecError`."""

from streamrec.models.errors import ConfigError, InputError, StreamrecError

__all__ = [
    "StreamrecError", "ConfigError", "InputError", "BrokerError", "DecodeError", "BadMarkerError",
    "UnknownSchemaError", "CorruptRecordError",
]


class BrokerError(StreamrecError):
    """The embedded broker cannot be provisioned, started, reached or stopped."""


class DecodeError(StreamrecError):
    """A message cannot be decoded. ``error_type`` names the reason in dead-letter headers."""

    error_type = "decode"


class BadMarkerError(DecodeError):
    """The bytes do not start with the Avro single-object marker ``C3 01``."""

    error_type = "bad_marker"


class UnknownSchemaError(DecodeError):
    """The writer-schema fingerprint is not one this reader knows."""

    error_type = "unknown_schema"


class CorruptRecordError(DecodeError):
    """The body does not decode with the writer schema (truncated, garbage, missing fields)."""

    error_type = "corrupt_record"


class InvalidRecordError(DecodeError):
    """The record decodes but its values are unusable (empty ids, absurd timestamp)."""

    error_type = "invalid_record"
