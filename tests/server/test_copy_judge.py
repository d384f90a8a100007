"""The model as judge of a weaker copy at a line start (server/completion.py: JUDGE_MIN,
JUDGE_LOGPROB): offered when the model's mean log-probability per token of it is high enough,
else the model writes its own line; off by default (JUDGE_LOGPROB None), as measured. A fake
host stands in for the model, so each branch is sure."""

from __future__ import annotations

import pytest
from lsprotocol import types

from bashlsp.model.engine import Completion, Suggestion
from bashlsp.server import completion
from bashlsp.server.completion import (
    COPY_MIN,
    JUDGE_MIN,
    JUDGE_TOKENS,
    inline_completion,
    judge_accepts,
    judged,
    judged_text,
)
from bashlsp.server.context import ProjectContext
from bashlsp.server.documents import DocumentStore
from bashlsp.server.lookup import Copy, copy_suggestion
from bashlsp.server.requests import RequestTracker
from bashlsp.server.reuse import ShownSuggestions
from bashlsp.server.services import Services, ToolRunner
from bashlsp.server.settings import Settings

JUDGE_LOGPROB = -2.0  # the judge's threshold where a test turns it on (the one measured)
# The line before the cursor shares 2 of 3 words with `log "starting" now`'s: the copy scores
# 2/3 * LINE_WEIGHTS[0] + 0 = 0.67, between JUDGE_MIN and COPY_MIN.
TEXT = 'x=1\nlog "starting" now\nrun_daemon --start\ny=2\nlog "starting" later\n'


class FakeHost:
    may_serve = True

    def __init__(self, logprob: float) -> None:
        self.logprob = logprob
        self.scored: list[tuple[list[str], int]] = []
        self.completed = 0

    async def score(self, query, continuations, should_stop, max_tokens):
        self.scored.append((list(continuations), max_tokens))
        return [[self.logprob] * 3 for _ in continuations]

    async def complete(self, query, should_stop):
        self.completed += 1
        return Completion([Suggestion("echo model", -0.1, 2)])


def _services(host: FakeHost) -> tuple[Services, object]:
    documents = DocumentStore()
    doc = documents.open("file:///judge.sh", "shellscript", 1, "#!/bin/sh\n" + TEXT)
    notify = lambda *args: None  # noqa: E731
    services = Services(
        host=host,
        requests=RequestTracker(),
        tools=ToolRunner(notify),
        retrieval=None,
        context=ProjectContext(notify),
        shown=ShownSuggestions(),
        documents=documents,
        notify=notify,
    )
    return services, doc


def test_the_rule_and_its_bounds():
    assert JUDGE_MIN < COPY_MIN
    assert not judged(None) and not judged(Copy("a", COPY_MIN)) and not judged(Copy("a", JUDGE_MIN - 0.01))
    assert judged(Copy("a", JUDGE_MIN)) and not judged(Copy("a", JUDGE_MIN), copy_min=None)
    assert judge_accepts([-2.0, -2.0], -2.0) and not judge_accepts([-2.1], -2.0)
    assert not judge_accepts([], -2.0)  # nothing scored: no copy
    # The newline that ends the copied line is judged too, unless text follows on the cursor line.
    assert judged_text(Copy("ls", 0.6), "\nmore\n") == "ls\n" and judged_text(Copy("ls", 0.6), " -l\n") == "ls"


def test_the_weaker_copy_of_this_document_is_judged():
    copy = copy_suggestion("#!/bin/sh\n" + TEXT, "")
    assert copy is not None and copy.text == "run_daemon --start" and judged(copy)


@pytest.fixture()
def judge_on(monkeypatch):
    monkeypatch.setattr(completion, "JUDGE_LOGPROB", JUDGE_LOGPROB)


async def test_the_judge_is_off_by_default_and_the_model_answers():
    assert completion.JUDGE_LOGPROB is None
    host = FakeHost(0.0)
    services, doc = _services(host)
    try:
        answer = await inline_completion(services, Settings(), doc, types.Position(line=6, character=0))
        assert [item.insert_text for item in answer.items] == ["echo model"]
        assert host.scored == [] and host.completed == 1 and services.context.judged == 0
    finally:
        services.tools.close()


async def test_a_weaker_copy_the_model_finds_likely_is_the_answer_without_decoding(judge_on):
    host = FakeHost(JUDGE_LOGPROB + 0.5)
    services, doc = _services(host)
    try:
        answer = await inline_completion(services, Settings(), doc, types.Position(line=6, character=0))
        assert [item.insert_text for item in answer.items] == ["run_daemon --start"]
        assert host.scored == [(["run_daemon --start\n"], JUDGE_TOKENS)] and host.completed == 0
        assert services.context.copies == 1 and services.context.judged == 1
    finally:
        services.tools.close()


async def test_a_weaker_copy_the_model_finds_unlikely_gives_way_to_the_models_line(judge_on):
    host = FakeHost(JUDGE_LOGPROB - 0.5)
    services, doc = _services(host)
    try:
        answer = await inline_completion(services, Settings(), doc, types.Position(line=6, character=0))
        assert [item.insert_text for item in answer.items] == ["echo model"]
        assert len(host.scored) == 1 and host.completed == 1 and services.context.copies == 0
        # Mid-line nothing is judged.
        await inline_completion(services, Settings(), doc, types.Position(line=5, character=3))
        assert len(host.scored) == 1
    finally:
        services.tools.close()
