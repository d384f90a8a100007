"""JSON-RPC over stdio or TCP, with an answer for every request.

pygls 2.1.1 leaves some requests without any reply, so the editor waits forever (measured):
- params that do not match the method's type (`"params": null`, `1`, a wrong field type): its
  message loop logs the structuring error and drops the message;
- a body that is not JSON (or not UTF-8), a request without `"jsonrpc": "2.0"`;
- requests after `shutdown` are dropped silently.
Here the transport frames and parses messages itself and hands each to `BashlspProtocol.receive`,
which answers -32700 (parse error), -32600 (invalid request), -32602 (invalid params),
-32002 (before initialize) or lets pygls answer (-32601 for an unknown method).

Two more pygls choices changed here: stdin is read by a daemon thread of its own (pygls reads it
through its shared thread pool, which also runs handlers, and a blocked read keeps the process
alive after `exit`), and JSON is parsed in that thread so a 5 MB didOpen does not stall the
event loop. Open documents live in `documents.DocumentStore`, not pygls' workspace.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import threading
from collections.abc import Callable
from typing import Any

import attrs
from cattrs import transform_error
from cattrs.errors import ClassValidationError
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pygls.protocol import LanguageServerProtocol
from pygls.protocol.json_rpc import JsonRPCNotification, JsonRPCRequestMessage, JsonRPCResponseMessage
from pygls.protocol.language_server import lsp_method

from ..model.errors import BashlspError
from . import convert

logger = logging.getLogger(__name__)

# The private members of pygls 2.1.1's LanguageServerProtocol this module uses, and why. They are
# used here only (the server reads them through `pending_handlers` and `shutdown_received`);
# tests/server/test_pygls_private.py fails by name when a pygls upgrade renames or reshapes one.
# name -> (the parameters after self of a method, or the type of an attribute; why)
PYGLS_PRIVATE = {
    "_server": (object, "$/cancelRequest must also stop the model work of our RequestTracker"),
    "_converter": (object, "messages are structured here, with pygls' own cattrs converter, so a bad one is answered"),
    "_result_types": (dict, "the result type pygls filed for a request we sent, to structure its response here"),
    "_shutdown": (bool, "requests after shutdown get -32600 (pygls drops them); the exit code at end of input"),
    "_request_futures": (
        dict,
        "pygls files a future per handler there and never removes a notification's: forgotten here",
    ),
    "_send_data": (("data",), 'an error answer with "id": null as JSON-RPC wants (lsprotocol leaves the id out)'),
    "_send_response": (("msg_id", "result", "error"), "a BashlspError a handler raised is answered as an LSP error"),
    "_send_handler_result": (("future", "msg_id"), "overridden: the one place a handler's error becomes an LSP error"),
    "_execute_handler": (
        ("msg_id", "handler", "callback", "args", "kwargs"),
        "overridden: to forget the futures above",
    ),
    "_handle_cancel_notification": (("msg_id",), "overridden: an id that is no number or string; stop model work too"),
}

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
MAX_HEADER_BYTES = 8192
PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS = -32700, -32600, -32601, -32602
SERVER_NOT_INITIALIZED = -32002


class FramingProblem(str):
    """A message the framer could not deliver (no Content-Length, too large)."""


class MessageFramer:
    """Splits a byte stream into LSP message bodies (`Content-Length` framing)."""

    def __init__(self, max_body: int = MAX_MESSAGE_BYTES) -> None:
        self.max_body = max_body
        self._buffer = bytearray()
        self._length: int | None = None
        self._skip = 0

    def feed(self, data: bytes) -> list[bytes | FramingProblem]:
        self._buffer += data
        out: list[bytes | FramingProblem] = []
        while True:
            if self._skip:
                n = min(self._skip, len(self._buffer))
                del self._buffer[:n]
                self._skip -= n
                if self._skip:
                    break
            if self._length is None:
                end = self._buffer.find(b"\r\n\r\n")
                if end < 0:
                    if len(self._buffer) > MAX_HEADER_BYTES:
                        self._buffer.clear()
                        out.append(FramingProblem("discarded bytes that are not an LSP header"))
                    break
                header = bytes(self._buffer[:end]).decode("ascii", "replace")
                del self._buffer[: end + 4]
                length = _content_length(header)
                if length is None:
                    out.append(FramingProblem(f"message without a valid Content-Length: {header[:200]!r}"))
                    continue
                if length > self.max_body:
                    self._skip = length
                    out.append(FramingProblem(f"message of {length} bytes discarded (the limit is {self.max_body})"))
                    continue
                self._length = length
            if len(self._buffer) < self._length:
                break
            out.append(bytes(self._buffer[: self._length]))
            del self._buffer[: self._length]
            self._length = None
        return out


def _content_length(header: str) -> int | None:
    for line in header.split("\r\n"):
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            value = value.strip()
            return int(value) if value.isdigit() else None
    return None


class ParseFailure(str):
    """A body that is not JSON; the text says why."""


def parse_body(body: bytes | FramingProblem) -> Any:
    if isinstance(body, FramingProblem):
        return ParseFailure(body)
    try:
        # Invalid UTF-8 becomes U+FFFD instead of losing the whole message (and its id).
        return json.loads(body.decode("utf-8", "replace"))
    except ValueError as exc:  # JSONDecodeError, and RecursionError-free ValueErrors
        return ParseFailure(f"not JSON: {exc}")
    except RecursionError:
        return ParseFailure("JSON nested too deeply")


class BashlspProtocol(LanguageServerProtocol):
    def __init__(self, server, converter) -> None:
        super().__init__(server, converter)
        self.initialize_received = False

    @property
    def pending_handlers(self) -> int:
        """Handlers pygls has started and not finished (bashlsp.modelInfo's inFlight; a leak of
        futures shows here)."""
        return len(self._request_futures)

    @property
    def shutdown_received(self) -> bool:
        return self._shutdown

    # -- input -------------------------------------------------------------------------------------

    def receive(self, data: Any) -> None:
        """Handle one parsed message (or a ParseFailure). Never raises, except SystemExit on exit."""
        try:
            self._receive(data)
        except (SystemExit, KeyboardInterrupt):
            raise
        except Exception:  # a bug here must not take the server down: log it, go on
            logger.exception("failed to handle a message")

    def _receive(self, data: Any) -> None:
        if isinstance(data, ParseFailure):
            self._reply_error(None, PARSE_ERROR, f"Parse error: {data}")
            return
        if not isinstance(data, dict):
            self._reply_error(None, INVALID_REQUEST, "Invalid Request: a message must be a JSON object")
            return
        has_method = "method" in data
        is_request = has_method and "id" in data
        msg_id = data.get("id")
        if is_request and (isinstance(msg_id, bool) or not isinstance(msg_id, (int, str))):
            self._reply_error(None, INVALID_REQUEST, "Invalid Request: id must be a number or a string")
            return
        method = data.get("method")
        if data.get("jsonrpc") != self.VERSION or (has_method and not isinstance(method, str)):
            if is_request:
                self._reply_error(
                    msg_id, INVALID_REQUEST, 'Invalid Request: needs "jsonrpc": "2.0" and a string method'
                )
            else:
                logger.warning("ignored a message that is not JSON-RPC 2.0")
            return
        if is_request and self._shutdown:
            self._reply_error(msg_id, INVALID_REQUEST, f"Invalid Request: the server is shutting down ({method})")
            return
        if has_method and not self.initialize_received and method not in (types.INITIALIZE, types.EXIT):
            if is_request:
                self._reply_error(msg_id, SERVER_NOT_INITIALIZED, f"Server not initialized: {method} before initialize")
            return
        if (
            has_method
            and (kind := _method_kind(method)) is not None
            and kind != ("request" if is_request else "notification")
        ):
            # LSP defines the method the other way round: a notification sent with an id, or a
            # request without one. pygls would drop the id or call a handler with the wrong shape.
            if is_request:
                self._reply_error(
                    msg_id, METHOD_NOT_FOUND, f"Method not found: {method} is a notification, not a request"
                )
            else:
                logger.warning("ignored %s sent as a notification: it is a request", method)
            return
        if not has_method and "id" not in data:
            logger.warning("ignored a JSON-RPC message with neither method nor id")
            return
        try:
            message = self._structure(data, has_method)
        except Exception as exc:
            reason = exc
            if is_request:
                self._reply_error(msg_id, INVALID_PARAMS, f"Invalid params for {method}: {_first_line(reason)}")
            elif has_method:
                logger.warning("ignored %s notification with invalid params: %s", method, _first_line(reason))
            else:
                logger.warning("ignored a malformed response: %s", _first_line(reason))
            return
        if is_request and method == types.INITIALIZE:
            self.initialize_received = True
        self.handle_message(message)

    def _structure(self, data: dict, has_method: bool) -> Any:
        """pygls' structure_message without its traceback logging (a bad message is the
        client's error, answered as such, not the server's)."""
        if "id" in data and not has_method:
            if "error" in data:
                return self._converter.structure(data, types.ResponseErrorMessage)
            return self._converter.structure(data, self._result_types.pop(data["id"], None) or JsonRPCResponseMessage)
        message_type = self.get_message_type(data["method"])
        if "params" not in data:
            # JSON-RPC lets a message leave out params; pygls' untyped message classes require
            # the field, so an unknown method without params got -32602 instead of -32601.
            data = {**data, "params": None}
        if "id" in data:
            return self._converter.structure(data, message_type or JsonRPCRequestMessage)
        return self._converter.structure(data, message_type or JsonRPCNotification)

    def _reply_error(self, msg_id, code: int, message: str) -> None:
        # A plain dict: lsprotocol leaves out an id of None, but JSON-RPC wants "id": null there.
        self._send_data({"jsonrpc": self.VERSION, "id": msg_id, "error": {"code": code, "message": message}})

    # -- one place where handler errors become LSP errors -------------------------------------------

    def _send_handler_result(self, future, *, msg_id):
        if not future.cancelled():
            exc = future.exception()
            # A user's or client's error (an unknown command: JsonRpcInvalidParams) is answered
            # as such; pygls would also log it with a traceback, as if the server had failed.
            if isinstance(exc, (BashlspError, JsonRpcException)):
                self._request_futures.pop(msg_id, None)
                self._send_response(msg_id, error=convert.response_error(exc))
                return
        super()._send_handler_result(future, msg_id=msg_id)

    def _execute_handler(self, msg_id, handler, callback, args=None, kwargs=None):
        # pygls 2.1.1 files the future of every async or generator handler under msg_id in
        # _request_futures, but only a request's answer removes it: notifications (didChange on
        # every keystroke) and the inner steps of generator handlers run under made-up uuid ids
        # that stay forever (measured: ~1 KB per keystroke, +10% resident memory in 3 minutes
        # of `bashlsp bench stress`). Forget those once they are done.
        super()._execute_handler(msg_id, handler, callback, args, kwargs)
        answers_request = isinstance(callback, functools.partial) and callback.func == self._send_handler_result
        future = self._request_futures.get(msg_id)
        if future is not None and not answers_request:

            def forget(done, msg_id=msg_id) -> None:
                if self._request_futures.get(msg_id) is done:
                    del self._request_futures[msg_id]

            future.add_done_callback(forget)

    def _handle_cancel_notification(self, msg_id):
        if isinstance(msg_id, bool) or not isinstance(msg_id, (int, str)):
            # lsprotocol lets `{"id": [...]}` through; as a dict key it raised TypeError (fuzzing).
            logger.warning("ignored $/cancelRequest with an id that is not a number or a string")
            return
        # Also stop work pygls cannot see: a command's task, the model worker's decode loop.
        self._server.requests.cancel_message(msg_id)
        super()._handle_cancel_notification(msg_id)

    # -- documents: kept by the server's DocumentStore, not pygls' workspace --------------------------

    @lsp_method(types.TEXT_DOCUMENT_DID_OPEN)
    def lsp_text_document__did_open(self, params: types.DidOpenTextDocumentParams):
        if (handler := self.fm.features.get(types.TEXT_DOCUMENT_DID_OPEN)) is not None:
            yield handler, (params,), None

    @lsp_method(types.TEXT_DOCUMENT_DID_CHANGE)
    def lsp_text_document__did_change(self, params: types.DidChangeTextDocumentParams):
        if (handler := self.fm.features.get(types.TEXT_DOCUMENT_DID_CHANGE)) is not None:
            yield handler, (params,), None

    @lsp_method(types.TEXT_DOCUMENT_DID_CLOSE)
    def lsp_text_document__did_close(self, params: types.DidCloseTextDocumentParams):
        if (handler := self.fm.features.get(types.TEXT_DOCUMENT_DID_CLOSE)) is not None:
            yield handler, (params,), None


@functools.cache
def _method_kind(method: str) -> str | None:
    """ "request" or "notification" for a method LSP defines (by its message type), else None."""
    message_type = types.METHOD_TO_TYPES.get(method, (None,))[0]
    if message_type is None:
        return None
    return "request" if "id" in attrs.fields_dict(message_type) else "notification"


def _first_line(exc: BaseException) -> str:
    if isinstance(exc, ClassValidationError):  # say which field is wrong, not just "1 sub-exception"
        return "; ".join(transform_error(exc, path="message"))[:300]
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


# -- transports ----------------------------------------------------------------------------------------


class FileWriter:
    """pygls' writer interface over a binary file (stdout)."""

    def __init__(self, stream) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def write(self, data: bytes) -> None:
        with self._lock:
            self._stream.write(data)
            self._stream.flush()

    def close(self) -> None:
        try:
            self._stream.close()
        except OSError:
            pass


def read_stream_in_thread(
    fd: int, loop: asyncio.AbstractEventLoop, deliver: Callable[[Any], None], at_eof: Callable[[], None]
) -> threading.Thread:
    """Start a daemon thread reading framed messages from `fd`; each parsed message is handed to
    `deliver` on the event loop, in order; `at_eof` runs there when the stream ends."""

    def read() -> None:
        framer = MessageFramer()
        try:
            while True:
                try:
                    chunk = os.read(fd, 1 << 20)
                except OSError:
                    chunk = b""
                if not chunk:
                    break
                for body in framer.feed(chunk):
                    loop.call_soon_threadsafe(deliver, parse_body(body))
            loop.call_soon_threadsafe(at_eof)
        except RuntimeError:  # the loop is closed: the server has exited
            pass

    thread = threading.Thread(target=read, name="bashlsp-stdin", daemon=True)
    thread.start()
    return thread
