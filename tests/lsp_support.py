"""Helpers shared by the pytest-lsp tests of the server."""

from __future__ import annotations

import asyncio

from lsprotocol import types
from pytest_lsp import LanguageClient


async def wait_for_log(client: LanguageClient, needle: str, timeout: float = 120) -> types.LogMessageParams:
    async def wait():
        while True:
            for message in client.log_messages:
                if needle in message.message:
                    return message
            await client.wait_for_notification(types.WINDOW_LOG_MESSAGE)

    return await asyncio.wait_for(wait(), timeout)
