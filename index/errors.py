"""Errors raised by newsroom-qa's core, each with a message a person can act on.

    QAError
    ├── InvalidInput         (bad question, document or parameter)
    │   └── UnsupportedFormat  (a file type or encoding we cannot read)
    ├── DocumentNotFound     (no document with that id)
    ├── ModelUnavailable     (the embedding or NLP model cannot be loaded or fails its checksum)
    └── DataDirError         (the data directory is unreadable or was built differently)
        └── ModelMismatch      (the data directory was built with another embedding model)

Front ends translate these: HTTP routes into 4xx responses, the CLI into one line and exit code 1.
"""

__all__ = [
    "DataDirError",
    "DocumentNotFound",
    "InvalidInput",
    "ModelMismatch",
    "ModelUnavailable",
    "QAError",
    "UnsupportedFormat",
]


class QAError(Exception):
    """Base class of every error newsroom-qa raises on purpose."""


class InvalidInput(QAError):
    """The question, document or parameter given cannot be used."""


class UnsupportedFormat(InvalidInput):
    """A file's type or encoding is not one newsroom-qa can read."""


class DocumentNotFound(QAError):
    """No stored document has the requested id."""


class ModelUnavailable(QAError):
    """A model could not be loaded or failed its integrity check."""


class DataDirError(QAError):
    """The data directory cannot be used as it is."""


class ModelMismatch(DataDirError):
    """The data directory was built with a different embedding model."""
