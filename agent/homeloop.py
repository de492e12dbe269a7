"""An engine's home: one event loop on a daemon thread.

vLLM's ``AsyncLLM`` (and an httpx client) binds to the event loop it first runs on,
so an engine used from a second loop hangs: ``agent.ask()`` then
``asyncio.run(agent.aask(...))`` waited forever. Each engine therefore runs on a
loop of its own, on its own thread, and calls from any other loop, or from no
loop at all, are relayed to it. The relay costs one thread hop per streamed chunk.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["HomeLoop"]

T = TypeVar("T")
_END = object()


class HomeLoop:
    """An event loop running on a daemon thread until :meth:`close`."""

    def __init__(self, name: str = "splice-engine") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def here(self) -> bool:
        """Whether the caller is already on this loop."""
        try:
            return asyncio.get_running_loop() is self.loop
        except RuntimeError:
            return False

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        if self.loop.is_closed():
            coro.close()
            raise RuntimeError("this engine has been closed")
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` here and block until it ends. Ctrl-C cancels it."""
        if self.here():
            coro.close()
            raise RuntimeError("a blocking call from inside the engine's own loop: await it")
        future = self.submit(coro)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await ``coro`` on this loop from any loop."""
        if self.here():
            return await coro
        future = self.submit(coro)
        try:
            return await asyncio.wrap_future(future)
        finally:
            future.cancel()

    async def relay(self, make: Callable[[], AsyncIterator[T]]) -> AsyncIterator[T]:
        """Iterate ``make()`` on this loop, yielding its items on the caller's.

        Leaving early (``break``, cancellation) cancels the producer, so an engine
        request is aborted as it would be on its own loop."""
        if self.here():
            async for item in make():
                yield item
            return
        caller = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[Any, BaseException | None]] = asyncio.Queue()

        def put(item: Any, exc: BaseException | None = None) -> None:
            try:
                caller.call_soon_threadsafe(queue.put_nowait, (item, exc))
            except RuntimeError:  # the caller's loop is gone: nobody is listening
                pass

        async def pump() -> None:
            try:
                async for item in make():
                    put(item)
            except BaseException as exc:
                put(_END, exc)
                raise
            put(_END)

        future = self.submit(pump())
        try:
            while True:
                item, exc = await queue.get()
                if item is _END:
                    if exc is not None and not isinstance(exc, asyncio.CancelledError):
                        raise exc
                    return
                yield item
        finally:
            future.cancel()

    def close(self) -> None:
        if self.loop.is_closed():
            return
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            if threading.current_thread() is not self._thread:
                self._thread.join(timeout=10)
        if not self.loop.is_running():
            self.loop.close()
