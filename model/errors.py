"""One exception hierarchy for the whole of bashlsp: model, server, trainer and benchmarks.

Every error a user or a client can cause (bad input, a bad checkpoint, a busy store, a cancelled
request) is a `BashlspError`, whose message is shown as it is. It lives in the bottom layer so
that every package can raise and catch the same classes. Each reaches the user in one place:
- the command line (`bashlsp`, `bashlsp-train`) prints `bashlsp: error: <message>` and exits 1;
- the server answers a request with `server/convert.response_error`: `Cancelled` -> -32800
  (RequestCancelled), `DocumentError` and `ConfigError` -> -32602 (InvalidParams), any other
  `BashlspError` -> -32803 (RequestFailed). Anything else is a bug: -32603 (InternalError).
A `ValueError` or `TypeError` is a programming error inside bashlsp, not a user's.
"""


class BashlspError(Exception):
    """Base class: the message is shown to the user as is."""


# -- settings and the model (model/) --------------------------------------------------------------


class ConfigError(BashlspError):
    """A model config, a preset name, a device or a setting is invalid."""


class TokenizerError(BashlspError):
    """A tokenizer file is missing, unreadable or inconsistent."""


class CheckpointError(BashlspError):
    """A checkpoint is missing, incomplete, corrupt or does not match its config."""


class StoreError(BashlspError):
    """The checkpoint store is unusable (bad pointer, unknown id, nothing to roll back to)."""


class ExampleIndexError(BashlspError):
    """A command-example index is missing, unreadable, corrupt or of another format."""


class Cancelled(BashlspError):
    """The caller's should_stop() turned true (the editor cancelled, or a newer request for the
    same document arrived); the work was abandoned between two steps."""


# -- serving (server/) ----------------------------------------------------------------------------


class RequestTimeout(BashlspError):
    """A request ran past its bound (server/watchdog.py) and was stopped; the message names the
    feature."""


class DocumentError(BashlspError):
    """A document or a request about it cannot be served (not shell, too large, binary, a bad
    range or command argument)."""


# -- training (training/) -------------------------------------------------------------------------


class TrainingError(BashlspError):
    """Training cannot start or continue (no data, bad options)."""


class StoreLockedError(StoreError):
    """Another trainer holds the store's lock."""
