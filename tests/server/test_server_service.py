"""The typed model service: request tracking (one context manager) and ModelHost.complete, which
owns the worker thread and returns each request's stats."""

from __future__ import annotations

import asyncio

import pytest

from bashlsp.model.engine import Completion, CompletionQuery
from bashlsp.model.errors import Cancelled
from bashlsp.server.hotswap import ModelHost, Remembered
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


async def test_an_answer_made_ahead_of_time_is_given_to_the_same_query_without_the_model(tiny_checkpoint):
    host = _host(tiny_checkpoint, [])
    host.start()
    try:
        text = '#!/bin/sh\nfor f in *; do\n  echo "$f"\ndone\n' * 3
        query = CompletionQuery("file:///b.sh", text, "", "inline", max_tokens=8)
        await host.complete(CompletionQuery("file:///warm.sh", "echo ", "", "inline", max_tokens=2), lambda: False)
        host.prefill(query, answer=True)
        await asyncio.get_running_loop().run_in_executor(host.worker, lambda: None)  # the queue has run
        ran = host.stats["inline"].requests
        direct = host.engine.complete(query)  # what the model itself answers (on this thread: nothing else runs)
        remembered = await host.complete(
            CompletionQuery("file:///b.sh", text, "", "inline", max_tokens=8), lambda: False
        )
        assert [s.text for s in remembered.suggestions] == [s.text for s in direct.suggestions]
        assert host.remembered.hits == 1 and host.stats["inline"].requests == ran  # the model did not run
        # Anything else in the query runs the model: another prefix, a sampled answer, a closed document.
        await host.complete(CompletionQuery("file:///b.sh", text + "e", "", "inline", max_tokens=8), lambda: False)
        sampled = CompletionQuery("file:///b.sh", text + "e", "", "inline", max_tokens=8, temperature=0.7)
        await host.complete(sampled, lambda: False)
        await host.complete(sampled, lambda: False)
        assert host.remembered.hits == 1 and host.stats["inline"].requests == ran + 3
        again = CompletionQuery("file:///b.sh", text + "e", "", "inline", max_tokens=8)
        host.forget_document("file:///b.sh")
        await host.complete(again, lambda: False)
        assert host.remembered.hits == 1 and host.stats["inline"].requests == ran + 4
        await host.complete(again, lambda: False)  # the editor asks again at the same cursor
        assert host.remembered.hits == 2
        # A pre-fill for a query already answered decodes nothing more.
        host.prefill(again, answer=True)
        await asyncio.get_running_loop().run_in_executor(host.worker, lambda: None)
        assert host.stats["inline"].requests == ran + 4 and host.prefills == 1
    finally:
        host.close()


def test_remembered_answers_belong_to_the_model_that_made_them():
    remembered = Remembered()
    query = CompletionQuery("file:///a.sh", "echo ", "", "inline")
    answer = Completion([])
    old_model, new_model = object(), object()
    remembered.keep(old_model, query, answer)
    assert remembered.get(old_model, CompletionQuery("file:///a.sh", "echo ", "", "inline")) is answer
    assert remembered.get(new_model, query) is None  # a hot swap: the new model answers anew
    assert remembered.get(old_model, CompletionQuery("file:///a.sh", "echo ", "", "line")) is None
