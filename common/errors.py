"""Errors a client is told about: the message is safe to send, ``code`` is the machine-readable error code."""

from __future__ import annotations


class CodedError(Exception):
    default_code = "error"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code or self.default_code
