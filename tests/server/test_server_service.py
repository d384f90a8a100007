"""The typed model service: request tracking (one context manager) and ModelHost.complete, which
owns the worker thread and returns each request's stats."""

from __future__ import annotations

import asyncio

import pytest

from bashlsp.model.engine import CompletionQuery
from bashlsp.model.errors import Cancelled
from bashlsp.server.hotswap import ModelHost
from bashlsp.server.requests import RequestTracker
from bashlsp.server.settings import Settings


async def test_newest_request_per_document_and_kind_wins():
    message = {"id": 1}
    tracker = RequestTracker(lambda: message["id"])
    with tracker.track("file:///a.sh", "inline") as first:
        message["id"] = 2
        with tracker.track("file:///a.sh", "inline") as second:
            assert first.stop.is_set() and not second.stop.is_set()
            message["id"] = 3
            with tracker.track("file:///a.sh", "completion") as other_kind:
                assert not second.stop.is_set() and len(tracker) == 3
            tracker.cancel_message(2)
            assert second.stop.is_set() and not other_kind.stop.is_set()
    assert len(tracker) == 0
    tracker.cancel_message(2)  # ended: nothing to cancel, no error


async def test_a_cancelled_task_sets_the_stop_flag_the_engine_polls():
    tracker = RequestTracker()
    started = asyncio.Event()
    seen = {}

    async def request():
        with tracker.track("file:///a.sh", "generate") as ticket:
            seen["ticket"] = ticket
            started.set()
            await asyncio.Event().wait()  # waits for the model, as a feature does

    task = asyncio.ensure_future(request())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen["ticket"].stop.is_set() and len(tracker) == 0


def _host(checkpoint, messages) -> ModelHost:
    host = ModelHost(lambda level, message, show=False: messages.append((level, message)))
    host.configure(Settings(checkpoint=str(checkpoint), device="cpu"))
    return host


async def test_model_host_completes_on_its_worker_and_counts_what_it_cost(tiny_checkpoint):
    messages: list = []
    host = _host(tiny_checkpoint, messages)
    host.start()  # the first load runs on the worker; complete() queues behind it
    try:
        query = CompletionQuery("file:///a.sh", "#!/bin/sh\nfor f in *; do\n  ec", "", "line", max_tokens=8)
        completion = await host.complete(query, lambda: False)
        assert completion.suggestions and completion.stats.prompt > 0
        stats = host.info()["stats"]["line"]
        assert stats["requests"] == 1 and stats["decodeSteps"] == completion.stats.decoded

        with pytest.raises(Cancelled):
            await host.complete(query, lambda: True)
        assert host.info()["stats"]["line"]["requests"] == 1  # a cancelled request costs nothing here
    finally:
        host.close()


async def test_a_model_failure_answers_empty_and_is_reported_once(tiny_checkpoint):
    messages: list = []
    host = _host(tiny_checkpoint, messages)
    host.start()
    try:
        query = CompletionQuery("file:///a.sh", "echo ", "", "inline", max_tokens=4)
        await host.complete(query, lambda: False)  # loaded

        class Broken:
            def complete(self, query, should_stop):
                raise RuntimeError("out of memory")

        host.engine = Broken()
        for _ in range(2):
            assert (await host.complete(query, lambda: False)).suggestions == []
        failures = [m for level, m in messages if level == "error" and "out of memory" in m]
        assert len(failures) == 1, messages
    finally:
        host.close()


async def test_prefill_fills_the_cache_the_next_request_reuses(tiny_checkpoint):
    host = _host(tiny_checkpoint, [])
    host.start()
    try:
        text = '#!/bin/sh\nfor f in *; do\n  echo "$f"\ndone\n' * 3
        await host.complete(CompletionQuery("file:///warm.sh", "echo ", "", "inline", max_tokens=2), lambda: False)
        host.prefill(CompletionQuery("file:///b.sh", text, "", "inline", max_tokens=8))
        await asyncio.get_running_loop().run_in_executor(host.worker, lambda: None)  # the queue has run
        assert host.prefills == 1
        typed = await host.complete(
            CompletionQuery("file:///b.sh", text + "e", "", "inline", max_tokens=8), lambda: False
        )
        assert typed.stats.prefilled <= 2 < typed.stats.prompt
    finally:
        host.close()
