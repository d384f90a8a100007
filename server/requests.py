"""Request tracking: the newest request per (document, kind) wins; cancellations reach the model.

A feature runs its model work inside `RequestTracker.track(uri, kind)`, which begins and ends
the request in one place. The ticket's stop flag is what the engine polls between
decode steps (`ModelHost.complete(query, ticket.stop.is_set)`); it is set when
- a newer request of the same kind arrives for the same document (the older one is stopped),
- the editor sends $/cancelRequest for the message (`cancel_message`),
- the handler's task is cancelled while it waits (pygls cancels it at its next await), or
- the server shuts down (`stop_all`).
A stopped request answers -32800 (the engine raises `Cancelled`).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


@dataclass(eq=False)
class Ticket:
    """One running request: its stop flag (read by the engine on the worker thread) and its task."""

    key: tuple[str, str]  # (uri, kind)
    stop: threading.Event = field(default_factory=threading.Event)
    task: asyncio.Task | None = None
    msg_id: Any = None

    def cancel(self) -> None:
        self.stop.set()
        if self.task is not None and not self.task.done() and self.task is not asyncio.current_task():
            self.task.cancel()


class RequestTracker:
    """The requests that run or wait for the model. Event loop thread only. `message_id` gives the
    JSON-RPC id of the request being handled (pygls keeps it per task), for $/cancelRequest."""

    def __init__(self, message_id: Callable[[], Any] = lambda: None) -> None:
        self._message_id = message_id
        self._latest: dict[tuple[str, str], Ticket] = {}
        self._by_message: dict[Any, Ticket] = {}
        self._active: set[Ticket] = set()

    @contextmanager
    def track(self, uri: str, kind: str, supersede: bool = True) -> Iterator[Ticket]:
        """A ticket for the request while the block runs. `supersede`: stop the running request of
        the same kind for `uri` (newest wins). A cancelled task sets the ticket's stop flag, so
        the model worker stops within one decode step instead of finishing work nobody awaits."""
        ticket = self._begin(uri, kind, self._message_id(), supersede)
        try:
            yield ticket
        except asyncio.CancelledError:
            ticket.stop.set()
            raise
        finally:
            self._end(ticket)

    def _begin(self, uri: str, kind: str, msg_id: Any, supersede: bool) -> Ticket:
        key = (uri, kind)
        if supersede and (old := self._latest.get(key)) is not None:
            old.cancel()
        ticket = Ticket(key=key, task=asyncio.current_task(), msg_id=msg_id)
        if supersede:
            self._latest[key] = ticket
        self._active.add(ticket)
        if msg_id is not None:
            self._by_message[msg_id] = ticket
        return ticket

    def _end(self, ticket: Ticket) -> None:
        if self._latest.get(ticket.key) is ticket:
            del self._latest[ticket.key]
        if ticket.msg_id is not None and self._by_message.get(ticket.msg_id) is ticket:
            del self._by_message[ticket.msg_id]
        self._active.discard(ticket)

    def cancel_message(self, msg_id: Any) -> None:
        """$/cancelRequest: stop the request with this message id, if it is one of ours."""
        if (ticket := self._by_message.get(msg_id)) is not None:
            ticket.cancel()

    def stop_all(self) -> None:
        for ticket in list(self._active):
            ticket.stop.set()

    def __len__(self) -> int:
        return len(self._active)
