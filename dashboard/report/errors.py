"""Exceptions raised by report export and verification."""

from __future__ import annotations


class ReportError(Exception):
    """A report could not be built or written (bad input, bad key, bad config)."""


class VerifyError(ReportError):
    """A report could not be verified at all (missing or unreadable manifest)."""
