"""The resident model: loaded once, run on one worker thread, replaced while the server runs.

The server reaches the model only through the host: `complete(query, should_stop)` runs the
engine on the worker thread and returns its `Completion` (suggestions and what they cost; the
host keeps the per-kind figures `bashlsp.modelInfo` shows), and `prefill(query)` fills a
document's cache there while nothing else runs (every request stops it first), and with
`answer=True` also decodes the answer, which a request for exactly that query then gets without
running the model (`Remembered`).

Threads:
- `worker` (one thread): everything that touches the Engine — the first load, every
  completion, and the swap itself. Requests therefore see either the old or the new model,
  never a mix, and a swap happens between two requests.
- `loader` (one thread): reading and validating a new checkpoint (`load_checkpoint` checks
  files, shapes, finiteness and runs a forward pass) while the old model keeps serving.
- watchdog's observer thread: notices the store's `current` pointer being replaced and hands
  that to the event loop.
A checkpoint that fails to load is never served: the editor is told why (logMessage and
showMessage) and the old model stays.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ..model.checkpoint import CheckpointStore, LoadedModel, bundled_checkpoint, load_checkpoint, resolve_checkpoint
from ..model.device import serving_device
from ..model.engine import Completion, CompletionQuery, Engine
from ..model.errors import BashlspError, Cancelled, CheckpointError
from .settings import Settings

logger = logging.getLogger(__name__)

POINTER_NAME = "current"

# notify(level, message, show): thread-safe; level is error | warning | info | log
Notify = Callable[[str, str, bool], None]


def _describe(loaded: LoadedModel) -> str:
    metrics = loaded.meta.get("metrics") or {}
    shown = ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in list(metrics.items())[:3])
    return f"{loaded.id} ({loaded.model.num_params() / 1e6:.1f}M parameters on {loaded.device}{'; ' + shown if shown else ''})"


def _lower_priority() -> None:
    """Loader thread: yield the CPU to the worker while a new checkpoint loads, so typing does
    not slow down during a swap (Linux schedules threads one by one; elsewhere this is a no-op)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    except (AttributeError, OSError):
        pass


@dataclass
class KindStats:
    """What the model spent on one kind of request (line, inline, generate; xN: N alternatives)."""

    requests: int = 0
    model_seconds: float = 0.0
    tokens: int = 0
    decode_steps: int = 0  # decode steps (one token per sample each) and their time, prefill excluded
    decode_seconds: float = 0.0

    def add(self, completion: Completion, seconds: float) -> None:
        self.requests += 1
        self.model_seconds += seconds
        self.tokens += max((s.tokens for s in completion.suggestions), default=0)
        self.decode_steps += completion.stats.decoded
        self.decode_seconds += completion.stats.decode_s

    def as_dict(self) -> dict:
        return {
            "requests": self.requests,
            "modelSeconds": round(self.model_seconds, 4),
            "tokens": self.tokens,
            "tokensPerSecond": round(self.tokens / self.model_seconds, 1) if self.model_seconds > 0 else None,
            "decodeSteps": self.decode_steps,
            "decodeSeconds": round(self.decode_seconds, 4),
            "decodeStepsPerSecond": round(self.decode_steps / self.decode_seconds, 1)
            if self.decode_seconds > 0
            else None,
        }


class Remembered:
    """The last greedy answer per (document, mode, alternatives), with the query and the model it
    was made for. The greedy model gives the same answer to the same query, so a request for
    exactly that query (the first ghost text after the editor was idle, answered ahead of time;
    an editor asking again at an unchanged cursor) is answered from here without running it.
    Written on the worker thread, read on the event loop (single dict operations)."""

    def __init__(self) -> None:
        self._answers: dict[tuple[str, str, int], tuple[object, CompletionQuery, Completion]] = {}
        self.hits = 0

    @staticmethod
    def _key(query: CompletionQuery) -> tuple[str, str, int]:
        return query.uri, query.mode, query.num_samples

    def keep(self, model: object, query: CompletionQuery, completion: Completion) -> None:
        if query.temperature <= 0:  # a sampled answer is one of many: never repeated
            self._answers[self._key(query)] = (model, query, completion)

    def get(self, model: object, query: CompletionQuery) -> Completion | None:
        """The answer made by `model` for a query equal to `query`, or None."""
        kept = self._answers.get(self._key(query))
        if kept is None or kept[0] != model or query.temperature > 0 or kept[1] != query:
            return None
        return kept[2]

    def forget(self, uri: str) -> None:
        for key in [k for k in self._answers if k[0] == uri]:
            self._answers.pop(key, None)


class ModelHost:
    def __init__(self, notify: Notify) -> None:
        self.notify = notify
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bashlsp-model")
        self.loader = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="bashlsp-loader", initializer=_lower_priority
        )
        self.engine: Engine | None = None
        self.problem: str | None = "the model is not loaded yet"
        self.loaded_at: float | None = None
        self.swaps = 0
        self.spec: str | None = None  # a pinned checkpoint (directory, store id, "default"); None follows the store
        self.store = CheckpointStore()
        self.device_name = "auto"
        self.device = None
        self.backend = "numpy"  # numpy on a CPU (no torch in the process), torch on a GPU
        self._rejected: dict[Path, str] = {}  # checkpoints that failed to load, and why
        self._observer = None
        self._first_load: asyncio.Future | None = None
        self._follow_task: asyncio.Task | None = None
        self._follow_again = False
        self.stats: dict[str, KindStats] = {}  # written on the worker thread only
        self.prefills = 0  # pre-fills that ran to the end (with their answer, when asked)
        self.remembered = Remembered()  # answers a request for the same query gets without the model
        self._prefill_stop = threading.Event()  # of the pre-fill queued or running
        self._failures_logged: set[str] = set()

    # -- configuration -------------------------------------------------------------------------------

    def configure(self, settings: Settings) -> bool:
        """Take the model settings; True when they differ from the ones in use (reload needed)."""
        spec = settings.checkpoint or None
        store_root = Path(settings.store).expanduser() if settings.store else None
        new_store = CheckpointStore(store_root)
        changed = (spec, new_store.root, settings.device) != (
            self.spec,
            self.store.root,
            self.device_name,
        ) or self.device is None
        if changed:
            self.spec, self.store, self.device_name = spec, new_store, settings.device
            try:
                self.backend, self.device = serving_device(settings.device)
            except BashlspError as exc:
                self.notify("warning", f"{exc}; using the CPU", True)
                self.backend, self.device = serving_device("cpu")
            self._rejected.clear()
        return changed

    @property
    def may_serve(self) -> bool:
        """A model is loaded, or the first load is still running (requests then wait for it,
        queued behind it on the worker)."""
        return self.engine is not None or (self._first_load is not None and not self._first_load.done())

    @property
    def pinned(self) -> bool:
        return self.spec is not None

    def info(self) -> dict:
        engine = self.engine
        info = {
            "loaded": engine is not None,
            "problem": self.problem,
            "pinned": self.spec,
            "store": str(self.store.root),
            "watching": self._observer is not None,
            "device": str(self.device) if self.device is not None else self.device_name,
            "swaps": self.swaps,
            "loadedAt": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.loaded_at))
            if self.loaded_at
            else None,
        }
        if engine is not None:
            info.update(engine.info())
        info["stats"] = {kind: s.as_dict() for kind, s in sorted(self.stats.items())}
        return info

    # -- completing ----------------------------------------------------------------------------------

    def _model(self, engine: Engine) -> tuple[Engine, int]:
        """Which model answers: a swap keeps the engine and counts (both on the worker, between jobs)."""
        return engine, self.swaps

    def forget_document(self, uri: str) -> None:
        """Free the engine's state for a closed document, on the worker (after the requests
        already queued for it). Event loop thread."""
        self.remembered.forget(uri)
        if self.engine is not None:
            try:
                self.worker.submit(self._forget, uri)
            except RuntimeError:  # the worker is shut down: the server is exiting
                pass

    def _forget(self, uri: str) -> None:
        if (engine := self.engine) is not None:
            engine.forget(uri)

    async def complete(self, query: CompletionQuery, should_stop: Callable[[], bool]) -> Completion:
        """Run the model for `query` on the worker thread (the only thread that touches the
        Engine) and return its suggestions and stats. No model loaded: no suggestions. Raises
        Cancelled once should_stop() is true (polled before the work starts and between decode
        steps). A model failure is logged to the editor, once per kind of failure, and answers
        with no suggestions: it must not fail the editor's request."""
        kind = query.mode + ("" if query.num_samples == 1 else f"x{query.num_samples}")
        engine = self.engine
        if engine is not None and (answer := self.remembered.get(self._model(engine), query)) is not None:
            if should_stop():
                raise Cancelled("request cancelled before it started")
            self.remembered.hits += 1  # (not in the per-kind figures: the model did not run)
            return answer
        self._prefill_stop.set()  # a pre-fill queued or running gives way (within one chunk)

        def job() -> Completion:
            if should_stop():
                raise Cancelled("request cancelled before it started")
            engine = self.engine
            if engine is None:
                return Completion([])
            started = time.perf_counter()
            try:
                completion = engine.complete(query, should_stop=should_stop)
            except Cancelled:
                raise
            except Exception as exc:
                self._engine_failed(exc)
                return Completion([])
            self.stats.setdefault(kind, KindStats()).add(completion, time.perf_counter() - started)
            self.remembered.keep(self._model(engine), query, completion)
            return completion

        return await asyncio.get_running_loop().run_in_executor(self.worker, job)

    async def score(
        self, query: CompletionQuery, continuations: list[str], should_stop: Callable[[], bool], max_tokens: int
    ) -> list[list[float]]:
        """The model's log-probabilities of the tokens of each continuation of `query`'s prompt
        (Engine.score), on the worker thread; no model, or a model failure (logged once): []."""
        self._prefill_stop.set()  # a pre-fill queued or running gives way (within one chunk)

        def job() -> list[list[float]]:
            if should_stop():
                raise Cancelled("request cancelled before it started")
            engine = self.engine
            if engine is None:
                return []
            try:
                return engine.score(query, continuations, should_stop, max_tokens)
            except Cancelled:
                raise
            except Exception as exc:
                self._engine_failed(exc)
                return []

        return await asyncio.get_running_loop().run_in_executor(self.worker, job)

    def prefill(self, query: CompletionQuery, answer: bool = False) -> None:
        """Fill the document's KV cache with the prompt `query` would have, on the worker while
        nothing else runs, so the request that follows pre-fills a token or two; with `answer`,
        decode its answer too and remember it, so a request for exactly `query` is answered at
        once (a decode step of a 20 KB prompt costs ~4 ms on 2 CPU cores, and a line start may
        decode a whole line). Lowest priority: a newer pre-fill replaces one not yet done, and
        every request stops it between chunks or decode steps. A failure costs the next request
        time, nothing else: it is logged once like any other."""
        self._prefill_stop.set()
        stop = self._prefill_stop = threading.Event()

        def job() -> None:
            engine = self.engine
            if engine is None or stop.is_set():
                return
            if answer and self.remembered.get(self._model(engine), query) is not None:
                return  # a request already asked this (the editor asks as the user types)
            try:
                engine.prefill(query, stop.is_set)
                if answer:
                    self.remembered.keep(self._model(engine), query, engine.complete(query, stop.is_set))
                self.prefills += 1
            except Cancelled:
                pass
            except Exception as exc:
                self._engine_failed(exc, "pre-filling the model's cache failed", "the next request takes longer")

        self.worker.submit(job)

    def _engine_failed(
        self, exc: Exception, failed: str = "the model failed on a request", outcome: str = "the answer is empty"
    ) -> None:
        """Worker thread: log a model failure to the editor, once per kind of failure."""
        what = f"{type(exc).__name__}: {exc}"[:300]
        if what not in self._failures_logged:
            self._failures_logged.add(what)
            logger.exception("the model failed")
            self.notify("error", f"bashlsp: {failed} ({what}); {outcome}", False)

    # -- loading -------------------------------------------------------------------------------------

    def _resolve(self) -> Path:
        return resolve_checkpoint(self.spec, self.store)

    def _load_first(self) -> str:
        """Worker thread: load the configured checkpoint, falling back to the bundled model."""
        tried: list[str] = []
        candidates: list[Path] = []
        try:
            candidates.append(self._resolve())
        except BashlspError as exc:
            tried.append(str(exc))
        bundled = bundled_checkpoint()
        if not self.pinned and bundled is not None and bundled not in candidates:
            candidates.append(bundled)
        for path in candidates:
            started = time.perf_counter()
            try:
                loaded = load_checkpoint(path, device=self.device, backend=self.backend)
            except (BashlspError, OSError, RuntimeError, ValueError) as exc:
                self._rejected[path] = str(exc)
                tried.append(f"{path}: {exc}" if not isinstance(exc, BashlspError) else str(exc))
                continue
            self._install(loaded, warm_up=True)
            took = f", loaded in {time.perf_counter() - started:.2f} s"
            return _describe(loaded) + took + ("" if not tried else f" (after: {'; '.join(tried)})")
        raise CheckpointError("no model could be loaded: " + "; ".join(tried or ["nothing to load"]))

    def _load_and_prepare(self, path: Path) -> LoadedModel:
        """Loader thread: load and validate `path`, and build what the swap would otherwise
        build on the worker while requests wait."""
        loaded = load_checkpoint(path, device=self.device, backend=self.backend)
        Engine.prepare(loaded)
        return loaded

    def _install(self, loaded: LoadedModel, warm_up: bool = False) -> None:
        """Worker thread only: serve `loaded` from the next request on."""
        if self.engine is None:
            engine = Engine(loaded)
            if warm_up:
                engine.warm_up()
            self.engine = engine
        else:
            self.engine.swap(loaded)
            self.swaps += 1
        self.problem = None
        self.loaded_at = time.time()

    def start(self) -> None:
        """Start loading the configured model on the worker (requests queue behind it; see
        may_serve), then follow the store. Event loop thread."""
        self._first_load = asyncio.get_running_loop().run_in_executor(self.worker, self._load_first)
        asyncio.ensure_future(self._after_first_load())

    async def _after_first_load(self) -> None:
        try:
            described = await self._first_load
            self.notify("info", f"bashlsp: serving {described}", False)
        except BashlspError as exc:
            self.problem = str(exc)
            remedy = (
                "set the checkpoint setting (or --checkpoint) to a checkpoint that loads"
                if self.pinned
                else f"train one with bashlsp-train, which publishes to {self.store.root}"
            )
            self.notify("error", f"bashlsp: {exc}. Completions stay empty until a model is available: {remedy}.", True)
        self.watch()

    async def reload(self, force: bool = True) -> dict:
        """Load the checkpoint the settings name now and swap it in. Raises if it does not load."""
        if self._first_load is not None and not self._first_load.done():
            try:
                await self._first_load
            except BashlspError:
                pass
        await self._swap_in(force=force, raise_errors=True)
        return self.info()

    async def _swap_in(self, force: bool, raise_errors: bool) -> None:
        loop = asyncio.get_running_loop()
        try:
            path = self._resolve()
        except BashlspError as exc:
            self.notify("warning", f"bashlsp: cannot find the checkpoint to serve: {exc}", True)
            if raise_errors:
                raise
            return
        serving = self.engine.loaded if self.engine is not None else None
        if not force and serving is not None and Path(serving.path).resolve() == path.resolve():
            return
        if not force and path in self._rejected:
            return
        self.notify("log", f"loading checkpoint {path} in the background", False)
        try:
            loaded = await loop.run_in_executor(self.loader, lambda: self._load_and_prepare(path))
        except (BashlspError, OSError, RuntimeError, ValueError) as exc:
            self._rejected[path] = str(exc)
            keeping = f"still serving {serving.id}" if serving is not None else "no model is served"
            self.notify("error", f"bashlsp: checkpoint {path.name} was not loaded ({keeping}): {exc}", True)
            if raise_errors:
                raise exc if isinstance(exc, BashlspError) else CheckpointError(str(exc)) from exc
            return
        self._rejected.pop(path, None)
        await loop.run_in_executor(self.worker, self._install, loaded)
        # A personal round says in one line what it gave (training/personal.py writes it).
        summary = loaded.meta.get("summary")
        said = f"; {summary}" if isinstance(summary, str) and summary else ""
        self.notify("info", f"bashlsp: now serving {_describe(loaded)}{said}", True)

    # -- following the store -------------------------------------------------------------------------

    def watch(self) -> None:
        """Watch the store's pointer (unless a checkpoint is pinned)."""
        self.unwatch()
        if self.pinned:
            return
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer

        loop = asyncio.get_running_loop()
        host = self

        class PointerHandler(FileSystemEventHandler):
            def on_any_event(self, event) -> None:
                names = {Path(str(event.src_path)).name, Path(str(getattr(event, "dest_path", "") or "")).name}
                if POINTER_NAME in names and event.event_type in ("created", "moved", "modified", "closed"):
                    try:
                        loop.call_soon_threadsafe(host.pointer_changed)
                    except RuntimeError:  # the loop has closed: the server is exiting
                        pass

        try:
            self.store.root.mkdir(parents=True, exist_ok=True)
            observer = Observer()
            observer.daemon = True
            observer.schedule(PointerHandler(), str(self.store.root), recursive=False)
            observer.start()
        except OSError as exc:
            self.notify(
                "warning",
                f"bashlsp: cannot watch the checkpoint store {self.store.root} ({exc}); "
                "new checkpoints need bashlsp.reloadModel",
                False,
            )
            return
        self._observer = observer
        self.notify("log", f"watching the checkpoint store {self.store.root}", False)

    def unwatch(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer = None

    def pointer_changed(self) -> None:
        """Event loop: the pointer was replaced. One follow task at a time; changes that come
        during a load are looked at once it ends."""
        if self._follow_task is not None and not self._follow_task.done():
            self._follow_again = True
            return
        self._follow_task = asyncio.ensure_future(self._follow())

    async def _follow(self) -> None:
        while True:
            self._follow_again = False
            if self._first_load is not None and not self._first_load.done():
                await asyncio.wait([self._first_load])
            await self._swap_in(force=False, raise_errors=False)
            if not self._follow_again:
                return

    # -- running -------------------------------------------------------------------------------------

    def close(self) -> None:
        self.unwatch()
        self.worker.shutdown(wait=False, cancel_futures=True)
        self.loader.shutdown(wait=False, cancel_futures=True)
