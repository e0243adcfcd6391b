"""Which HTTP status each core error means, for JSON responses and for error events in a stream."""

from __future__ import annotations

from fastapi import status

from index.errors import DataDirError, DocumentNotFound, InvalidInput, ModelUnavailable, QAError, UnsupportedFormat
from service.conversation.conversations import ConversationNotFound

__all__ = ["status_for"]

# The most specific class listed first wins.
_STATUS: list[tuple[type[QAError], int]] = [
    (UnsupportedFormat, status.HTTP_415_UNSUPPORTED_MEDIA_TYPE),
    (InvalidInput, status.HTTP_422_UNPROCESSABLE_CONTENT),
    (DocumentNotFound, status.HTTP_404_NOT_FOUND),
    (ConversationNotFound, status.HTTP_404_NOT_FOUND),
    (ModelUnavailable, status.HTTP_503_SERVICE_UNAVAILABLE),
    (DataDirError, status.HTTP_503_SERVICE_UNAVAILABLE),
]


def status_for(exc: QAError) -> int:
    return next((code for cls, code in _STATUS if isinstance(exc, cls)), status.HTTP_500_INTERNAL_SERVER_ERROR)
