"""Bounded answers: a request that runs too long is stopped and answered with an error.

An editor that sends a request waits for its answer, and some wait forever (issue 19: one line
made a symbol regex run for minutes and every request went unanswered). Two guards:
- `bounded(feature, handler)`: a request handler that runs past its bound is cancelled (its model
  work stops at the next decode step) and answered -32803 naming the feature; the first time per
  feature is logged to the editor, later ones only to the server's log.
- `LoopMonitor`: a thread that notices when the event loop itself stops turning (work that
  blocks it, which no timer on the loop can interrupt) and logs once per stall what it is running.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sys
import threading
import time
import traceback

from ..model.errors import Cancelled, RequestTimeout

logger = logging.getLogger(__name__)

# Seconds a request may run. The first requests also wait for the model to load; a generated
# script runs several samples and `bash -n`; reloading a model reads and checks a checkpoint.
REQUEST_BOUNDS_S = {
    "completion": 30.0,
    "inline completion": 30.0,
    "code actions": 30.0,
    "Generate script from comment": 120.0,
}
OTHER_BOUND_S = 120.0  # the other commands (reload a model, model info)


class Watchdog:
    """The bounds in force (one bound for all with `--request-timeout`) and who was told."""

    def __init__(self, notify, override_s: float | None = None) -> None:
        self.notify = notify
        self.override_s = override_s
        self.fired: dict[str, int] = {}

    def bound(self, feature: str) -> float:
        return self.override_s if self.override_s is not None else REQUEST_BOUNDS_S.get(feature, OTHER_BOUND_S)

    def expired(self, feature: str, bound: float) -> RequestTimeout:
        count = self.fired[feature] = self.fired.get(feature, 0) + 1
        message = f"bashlsp: {feature} ran past its bound of {bound:g} s and was stopped"
        if count == 1:
            self.notify("warning", f"{message} (later ones are logged only to the server's log)")
        else:
            logger.warning("%s (%d times)", message, count)
        return RequestTimeout(message)


def bounded(feature: str, handler):
    """`handler(ls, *args)` answered within `ls.watchdog.bound(feature)` seconds, or with an error.
    The timer cancels the handler's own task (no second task: request tracking and pygls'
    $/cancelRequest keep working on it)."""

    @functools.wraps(handler)
    async def run(ls, *args):
        watchdog: Watchdog = ls.watchdog
        task = asyncio.current_task()
        bound = watchdog.bound(feature)
        expired = False

        def expire() -> None:
            nonlocal expired
            expired = True
            task.cancel()

        timer = asyncio.get_running_loop().call_later(bound, expire)
        try:
            return await handler(ls, *args)
        except (asyncio.CancelledError, Cancelled):
            if not expired:
                raise
            if sys.version_info >= (3, 11):
                task.uncancel()  # the task goes on to send the error, not as cancelled
            raise watchdog.expired(feature, bound) from None
        finally:
            timer.cancel()

    return run


class LoopMonitor:
    """A daemon thread that asks the loop to answer every `interval` seconds and logs, once per
    stall, the loop thread's stack when it has not answered for `stall_s` seconds."""

    def __init__(self, loop: asyncio.AbstractEventLoop, loop_thread: int, interval: float = 0.5, stall_s: float = 5.0):
        self.loop, self.loop_thread = loop, loop_thread
        self.interval, self.stall_s = interval, stall_s
        self.last_answer = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="bashlsp-loop-monitor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _answered(self) -> None:
        self.last_answer = time.monotonic()

    def _watch(self) -> None:
        reported = False
        while not self._stop.wait(self.interval):
            try:
                self.loop.call_soon_threadsafe(self._answered)
            except RuntimeError:  # the loop is closed
                return
            stalled = time.monotonic() - self.last_answer
            if stalled < self.stall_s:
                reported = False
            elif not reported:
                reported = True
                frame = sys._current_frames().get(self.loop_thread)
                where = "".join(traceback.format_stack(frame, limit=8)) if frame is not None else "(unknown)\n"
                logger.error("bashlsp: the event loop has not answered for %.1f s; it is running:\n%s", stalled, where)
