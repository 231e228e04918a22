"""Errors raised by the encoders and readers; each message says what is wrong."""

from __future__ import annotations


class EncodeError(ValueError):
    """The results cannot be encoded (inputs inconsistent with the source images)."""


class NonConformantObjectError(ValueError):
    """A third-party DICOM object breaks a rule of the standard this package relies on."""
