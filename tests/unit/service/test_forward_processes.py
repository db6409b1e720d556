"""Forward passes in forked child processes: results, errors, a child that dies, what a child holds open, and
that nothing outlives the parent."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from service.engine.forward_processes import ForwardProcesses, ForwardProcessFailed, supported

pytestmark = pytest.mark.skipif(not supported(), reason="forward processes need fork (Linux)")


def pid_and_sum(batch: list[int]) -> tuple[int, int]:
    if batch and batch[0] == -1:
        raise ValueError("bad batch")
    if batch and batch[0] == -2:
        os.kill(os.getpid(), signal.SIGKILL)  # dies mid-pass
    return os.getpid(), sum(batch)


def wait_gone(pid: int, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:  # our own child: reap it if it exited
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return True
        except ChildProcessError:
            pass
        time.sleep(0.05)
    return False


def sockets_held(pid: int) -> int:
    count = 0
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            if stat.S_ISSOCK(os.stat(f"/proc/{pid}/fd/{name}").st_mode):
                count += 1
        except OSError:
            pass
    return count


def test_passes_run_in_the_children_and_return_their_results():
    pool = ForwardProcesses(pid_and_sum, 2)
    try:
        results = [pool.encode([i, i + 1]) for i in range(6)]
        assert [total for _, total in results] == [2 * i + 1 for i in range(6)]
        assert {pid for pid, _ in results} <= set(pool.pids)
        assert os.getpid() not in pool.pids and len(pool.pids) == 2
    finally:
        pool.close()


def test_an_exception_fails_only_its_pass_with_the_childs_traceback():
    pool = ForwardProcesses(pid_and_sum, 1)
    try:
        pids = pool.pids
        with pytest.raises(RuntimeError, match="ValueError: bad batch"):
            pool.encode([-1])
        assert pool.encode([3, 4])[1] == 7 and pool.pids == pids  # the same child goes on serving
    finally:
        pool.close()


def test_a_child_that_dies_mid_pass_fails_that_pass_and_is_replaced():
    pool = ForwardProcesses(pid_and_sum, 1)
    try:
        [first] = pool.pids
        with pytest.raises(ForwardProcessFailed, match="died during the pass"):
            pool.encode([-2])
        [second] = pool.pids
        assert second != first and wait_gone(first)
        assert pool.encode([5])[1] == 5
    finally:
        pool.close()


def test_a_child_killed_while_idle_loses_no_pass():
    pool = ForwardProcesses(pid_and_sum, 1)
    try:
        [first] = pool.pids
        os.kill(first, signal.SIGKILL)
        assert wait_gone(first)
        pid, total = pool.encode([1, 2])  # sent to its replacement, not failed
        assert total == 3 and pid != first
    finally:
        pool.close()


def test_a_child_holds_no_socket_but_its_own_pipe():
    """A forked child must not keep the server's listening socket, client connections or a sibling's pipe
    open: the port would stay bound after the server exits and closed connections would not close."""
    listener = socket.create_server(("127.0.0.1", 0))
    pool = ForwardProcesses(pid_and_sum, 2)
    try:
        pool.encode([1])  # the children have started and closed what they inherited
        pool.encode([1])
        for pid in pool.pids:
            assert sockets_held(pid) == 1
    finally:
        pool.close()
        listener.close()


def test_children_leave_sigterm_and_sigint_to_the_parent():
    """A stop signal sent to the whole group (Ctrl+C, systemctl) must not end the passes the parent drains."""
    pool = ForwardProcesses(pid_and_sum, 1)
    try:
        [pid] = pool.pids
        pool.encode([0])  # past its start-up, where the handlers are set
        os.kill(pid, signal.SIGTERM)
        os.kill(pid, signal.SIGINT)
        assert pool.encode([2, 2]) == (pid, 4)
    finally:
        pool.close()


def test_close_stops_every_child():
    pool = ForwardProcesses(pid_and_sum, 2)
    pids = pool.pids
    pool.close()
    assert all(wait_gone(pid) for pid in pids)
    with pytest.raises(RuntimeError, match="stopped"):
        pool.encode([1])


def test_children_exit_when_the_parent_is_killed(tmp_path: Path):
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_forward_processes import pid_and_sum
        from service.engine.forward_processes import ForwardProcesses
        pool = ForwardProcesses(pid_and_sum, 2)
        pool.encode([1])
        print(*pool.pids, flush=True)
        time.sleep(60)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).parents[3])
    try:
        children = [int(p) for p in parent.stdout.readline().split()]
        assert len(children) == 2
        parent.kill()
        parent.wait(timeout=10)
        assert all(wait_gone(pid) for pid in children)  # each saw its pipe close and exited
    finally:
        parent.kill()


def test_the_engine_serves_the_same_vectors_from_processes(tiny_artifact: Path):
    import asyncio

    from service.engine.encoder import load_encoder
    from service.engine.engine import EmbeddingEngine

    encoder = load_encoder(str(tiny_artifact), device="cpu", dtype="float32", cpu_threads=1)
    texts = ["How do I reset my PIN?", "card not working", "where is my refund"]

    async def embed(processes: bool) -> tuple[np.ndarray, list[int], bool]:
        engine = EmbeddingEngine(encoder, max_batch_tokens=512, max_batch_size=8, max_wait_ms=0, max_queue=64,
                                 max_text_chars=1000, truncate=True, forward_workers=2, forward_processes=processes)
        await engine.start()
        try:
            vectors = (await engine.embed(texts)).vectors
            return vectors, engine.forward_pids, engine.forward_processes
        finally:
            await engine.stop()

    on_threads, no_pids, used = asyncio.run(embed(False))
    assert no_pids == [] and not used
    in_processes, pids, used = asyncio.run(embed(True))
    assert used and len(pids) == 2 and os.getpid() not in pids
    np.testing.assert_allclose(in_processes, on_threads, atol=1e-6)
    assert all(wait_gone(pid) for pid in pids)  # stop() ended them
