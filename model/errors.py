"""One exception hierarchy for the whole of bashlsp.

Every error a user can cause (bad input, a bad checkpoint, a busy store) is a
`BashlspError`; the server turns it into an LSP error in one place and the
command line prints its message and exits non-zero.
"""


class BashlspError(Exception):
    """Base class: the message is shown to the user as is."""


class ConfigError(BashlspError):
    """A model config, a preset name or a setting is invalid."""


class TokenizerError(BashlspError):
    """A tokenizer file is missing, unreadable or inconsistent."""


class CheckpointError(BashlspError):
    """A checkpoint is missing, incomplete, corrupt or does not match its config."""


class StoreError(BashlspError):
    """The checkpoint store is unusable (bad pointer, unknown id, nothing to roll back to)."""


class StoreLockedError(StoreError):
    """Another trainer holds the store's lock."""


class DocumentError(BashlspError):
    """A document cannot be served (not shell, too large, binary, out-of-range position)."""


class TrainingError(BashlspError):
    """Training cannot start or continue (no data, bad options)."""


class Cancelled(BashlspError):
    """The caller's should_stop() turned true; the request was abandoned between two steps."""
