"""Forward passes in forked child processes, one per batcher worker: each child has its own GIL.

Why: with two 1-thread forward workers as threads, each pass re-takes the GIL between torch ops, against the
other worker and the event loop. `make bench-serve` measures both side by side (the "forward threads" variant;
bench/results/serve.json, docs/performance.md section 0).

Children are forked after the model is loaded, checked and warmed up: they share its weights copy-on-write and
start in milliseconds. A child runs one thread (torch's OpenMP pool is not fork-safe), so the engine uses
processes only for 1-thread workers. A child keeps no socket but its own pipe end (so it never holds a client
connection, the listening socket or a sibling's pipe open), ignores SIGINT/SIGTERM (the parent stops it), and
exits when its pipe closes. A child that dies fails the pass it held and is forked again for the next one.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import signal
import stat
import sys
import threading
import traceback
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

logger = logging.getLogger(__name__)

EncodeFn = Callable[[Sequence[Any]], Any]


def supported() -> bool:
    """Forking is safe and available: Linux (macOS system libraries are not fork-safe; Windows cannot fork)."""
    return sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()


class ForwardProcessFailed(RuntimeError):
    """The child running a pass died or broke its pipe; the pass is failed and the child replaced."""


def _close_inherited_sockets(keep: int) -> None:
    """In the child: close every inherited socket except `keep` (its own pipe end, a socketpair)."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd == keep:
            continue
        try:
            if stat.S_ISSOCK(os.fstat(fd).st_mode):
                os.close(fd)
        except OSError:  # the listing's own descriptor, already gone
            pass


def _child_main(conn: Connection, encode: EncodeFn, init: Callable[[], None] | None) -> None:
    # Ctrl+C reaches the whole process group and `systemctl stop` the whole cgroup: the parent drains its passes
    # and then tells each child to exit, so a child that stopped at once would fail the passes being drained.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _close_inherited_sockets(conn.fileno())
    if init is not None:
        init()
    while True:
        try:
            batch = conn.recv()
        except (EOFError, OSError):  # the parent is gone
            return
        if batch is None:
            return
        try:
            result: tuple[bool, Any] = (True, encode(batch))
        except Exception:  # the parent logs it and fails the pass; this child keeps serving
            result = (False, traceback.format_exc())
        conn.send(result)


class _Child:
    def __init__(self, process: BaseProcess, conn: Connection) -> None:
        self.process = process
        self.conn = conn


class ForwardProcesses:
    """`count` forked children that each run `encode(batch)`. `encode` is called from any number of threads (at
    most `count` at once block on a child; more wait for one). Raises ForwardProcessFailed when a child dies
    mid-pass and RuntimeError with the child's message when `encode` raised there."""

    def __init__(self, encode: EncodeFn, count: int, *, init: Callable[[], None] | None = None) -> None:
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        if not supported():
            raise RuntimeError("forward processes need fork (Linux)")
        self._encode = encode
        self._init = init
        self._context = multiprocessing.get_context("fork")
        self._idle: queue.Queue[_Child] = queue.Queue()
        self._children: list[_Child] = []
        self._lock = threading.Lock()
        self._closed = False
        for _ in range(count):
            self._idle.put(self._spawn())

    @property
    def pids(self) -> list[int]:
        with self._lock:
            return [c.process.pid for c in self._children if c.process.pid is not None]

    def _spawn(self) -> _Child:
        parent_end, child_end = self._context.Pipe(duplex=True)
        process = self._context.Process(target=_child_main, args=(child_end, self._encode, self._init),
                                        name="flipmatch-forward", daemon=True)
        process.start()
        child_end.close()
        child = _Child(process, parent_end)
        with self._lock:
            self._children.append(child)
        logger.debug("forward process started pid=%s", process.pid)
        return child

    def _discard(self, child: _Child) -> None:
        with self._lock:
            if child in self._children:
                self._children.remove(child)
        child.conn.close()
        if child.process.is_alive():
            child.process.kill()
        child.process.join(timeout=5)

    def encode(self, batch: Sequence[Any]) -> Any:
        if self._closed:
            raise RuntimeError("forward processes are stopped")
        batch = list(batch)
        child = self._idle.get()
        try:
            try:
                child.conn.send(batch)
            except OSError:  # it died while idle: nothing was lost, so the pass goes to its replacement
                child = self._replace(child)
                child.conn.send(batch)
            ok, value = child.conn.recv()
        except (EOFError, OSError) as err:  # the replacement goes back to the idle queue: no worker is lost
            self._replace(child, idle=True)
            raise ForwardProcessFailed(
                f"the forward process died during the pass (exit code {child.process.exitcode})") from err
        self._idle.put(child)
        if not ok:
            raise RuntimeError(f"the forward pass raised in its process:\n{value}")
        return value

    def _replace(self, dead: _Child, *, idle: bool = False) -> _Child:
        """Fork a successor for `dead` (queued as idle if `idle`, else returned to the caller)."""
        self._discard(dead)
        logger.error("forward process pid=%s died (exit code %s); starting another", dead.process.pid,
                     dead.process.exitcode)
        if self._closed:
            raise RuntimeError("forward processes are stopped")
        child = self._spawn()
        if idle:
            self._idle.put(child)
        return child

    def close(self, timeout_s: float = 10.0) -> None:
        """Ask every child to exit (after its current pass), then kill any that has not within `timeout_s`."""
        self._closed = True
        with self._lock:
            children = list(self._children)
            self._children.clear()
        for child in children:
            try:
                child.conn.send(None)
            except OSError:
                pass
        for child in children:
            child.process.join(timeout=timeout_s)
            if child.process.is_alive():
                child.process.kill()
                child.process.join(timeout=5)
            child.conn.close()
