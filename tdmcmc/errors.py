"""Errors meant for the user: printed as one line by the CLI, never as a traceback."""

from __future__ import annotations


class UserError(Exception):
    """Bad input or configuration; the message says what is wrong and where."""
