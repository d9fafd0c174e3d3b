"""A blocking iterator consumed from asyncio: each item is made in a worker thread, the event loop only waits.

Model code (Piper and XTTS synthesis, llama.cpp generation) is a blocking generator, and the deployments that stream
it must keep their event loop free. Here each ``next()`` is one job on an executor, submitted only when the consumer
asks for the next item: nothing is made ahead of the consumer, and streams that share a pool take turns item by
item instead of holding a thread each for their whole length.

A consumer that stops early (cancelled by a barge-in, or closing the async iterator) must stop the generator
promptly, but a generator cannot be closed while another thread runs it: the item being made finishes and the
iterator is closed right after it, in that thread; with no item under way it is closed at once. Either way nothing
more is asked of it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Executor
from typing import Any, TypeVar

T = TypeVar("T")
log = logging.getLogger("voi.threads")
_END = object()


async def iterate_in_thread(iterator: Iterator[T], executor: Executor | None = None,
                            on_finished: Callable[[], None] | None = None) -> AsyncIterator[T]:
    """Yield the items of ``iterator``, each made by one ``next()`` on ``executor`` (None: the loop's default one).

    An exception from the iterator reaches the consumer. ``on_finished`` is called on the event loop once the
    iterator is done with for good (exhausted, failed, or closed after the consumer stopped) and no thread runs it
    any more, e.g. to hand the model on to the next caller. It is called only if iteration has started: use
    ``contextlib.aclosing`` and start iterating at once.
    """
    loop = asyncio.get_running_loop()
    guard = threading.Lock()
    running = False  # a next() is under way in a worker thread
    stopped = False  # the consumer has gone: nothing more may be asked of the iterator

    def finish(on_loop: bool) -> None:
        close = getattr(iterator, "close", None)
        try:
            if close is not None:
                close()
        finally:
            if on_finished is not None and on_loop:
                on_finished()
            elif on_finished is not None:
                try:
                    loop.call_soon_threadsafe(on_finished)
                except RuntimeError:  # the loop is closed (shutting down): nobody left to tell
                    pass

    def step() -> Any:
        nonlocal running
        with guard:
            if stopped:  # queued before the consumer left, started after: the iterator is closed already
                return _END
            running = True
        try:
            return next(iterator, _END)
        finally:
            with guard:
                running = False
                close_here = stopped
            if close_here:
                try:
                    finish(on_loop=False)
                except Exception:  # the consumer has gone: this is the only place left to report it
                    log.exception("closing %r after its consumer left failed", iterator)

    try:
        while True:
            item = await loop.run_in_executor(executor, step)
            if item is _END:
                return
            yield item
    finally:
        with guard:
            stopped = True
            close_now = not running
        if close_now:
            finish(on_loop=True)
