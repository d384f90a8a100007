"""Prompt-lookup drafts for speculative greedy decoding (`PromptLookup`)."""

from __future__ import annotations

DRAFT_TOKENS = 7  # most tokens a prompt-lookup draft proposes for one verification
DRAFT_MISSES = 2  # fully rejected drafts after which a request stops drafting


class PromptLookup:
    """Draft tokens for speculative greedy decoding by looking the last tokens up in the context
    (prompt lookup decoding): code repeats itself (names, paths, whole lines, the text after the
    cursor), so the tokens that followed the same trigram/bigram earlier are often what comes
    next. The model verifies a whole draft in one forward, so every accepted token saves a step.

    It indexes a list it does not own (a document's cached token ids) as the list grows; after
    the list is cut back, `truncated` re-indexes from there, and stale entries are caught by
    checking the n-gram again before use."""

    def __init__(self, ids: list[int], special_ids: frozenset[int]) -> None:
        self.ids = ids
        self.special = special_ids
        self.indexed = 0  # positions before this one have their n-grams indexed
        self.after3: dict[tuple[int, int, int], int] = {}
        self.after2: dict[tuple[int, int], int] = {}

    def truncated(self, length: int) -> None:
        self.indexed = min(self.indexed, length)

    def _sync(self) -> None:
        ids, after2, after3 = self.ids, self.after2, self.after3
        for end in range(max(self.indexed, 2), len(ids)):  # n-grams followed by a token
            after2[(ids[end - 2], ids[end - 1])] = end
            if end >= 3:
                after3[(ids[end - 3], ids[end - 2], ids[end - 1])] = end
        self.indexed = len(ids)

    def propose(self, next_token: int, limit: int) -> list[int]:
        """Up to `limit` tokens that followed the latest earlier occurrence of the last two
        context tokens + `next_token` (else the last one + `next_token`)."""
        self._sync()
        ids = self.ids
        if len(ids) < 2 or limit <= 0:
            return []
        for key in ((ids[-2], ids[-1], next_token), (ids[-1], next_token)):
            at = (self.after3 if len(key) == 3 else self.after2).get(key)
            if at is not None and at < len(ids) and tuple(ids[at - len(key) : at]) == key:
                break
        else:
            return []
        draft = ids[at : at + limit]
        for i, token in enumerate(draft):
            if token in self.special:
                return draft[:i]
        return draft
