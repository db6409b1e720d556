"""Helpers for the API tests (a module with its own name, so test files can import it unambiguously)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
from fastapi import FastAPI


@contextlib.asynccontextmanager
async def running(app: FastAPI, timeout: float = 30.0) -> AsyncIterator[httpx.AsyncClient]:
    """The app's lifespan plus an httpx client on its ASGI transport, once ready (for concurrent requests)."""
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
            deadline = asyncio.get_running_loop().time() + timeout
            while (await http.get("/health/ready")).status_code != 200:
                assert asyncio.get_running_loop().time() < deadline, "not ready"
                await asyncio.sleep(0.02)
            yield http


async def until(check: Callable[[], bool | Awaitable[bool]], timeout: float = 10.0) -> None:
    """Poll `check` (sync or async) until true; fail at the deadline."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        assert asyncio.get_running_loop().time() < deadline, "condition not met before the deadline"
        await asyncio.sleep(0.01)


class HeldEncoder:
    """Wraps a real encoder; `hold()` makes the next forward passes wait until `release()`."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self._open = threading.Event()
        self._open.set()
        self.entered = threading.Event()
        self.batches: list[list[tuple[int, ...]]] = []

    @property
    def info(self) -> Any:
        return self.inner.info

    def tokenize(self, texts: Any) -> Any:
        return self.inner.tokenize(texts)

    def encode(self, batch: Any) -> Any:
        self.batches.append([t.ids for t in batch])
        self.entered.set()
        self._open.wait(timeout=30)
        return self.inner.encode(batch)

    def hold(self) -> None:
        self.entered.clear()
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def computed(self, text: str) -> bool:
        ids = self.inner.tokenize([text])[0].ids
        return any(ids in batch for batch in self.batches)
