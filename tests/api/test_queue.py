"""Back-pressure through HTTP: a full queue answers 429 with Retry-After, and a request whose client went away
is dropped before compute. The forward pass is held so the queue fills deterministically: on threads, since the
hold is an event in this process."""

from __future__ import annotations

import asyncio
import json

from api_helpers import running, until

from service.app import create_app


async def queue_depth(http) -> float:
    text = (await http.get("/metrics")).text
    return float(next(line.split()[1] for line in text.splitlines() if line.startswith("flipmatch_queue_depth ")))


def test_full_queue_answers_429_with_retry_after(make_settings, held_encoder):
    settings = make_settings(limits={"max_texts": 2}, batching={"max_queue": 4, "max_wait_ms": 0,
                                                                           "forward_workers": 1,
                                                                           "forward_processes": False})
    app = create_app(settings, encoder=held_encoder)

    async def scenario() -> None:
        async with running(app) as http:
            held_encoder.hold()
            first = asyncio.ensure_future(http.post("/v1/embeddings", json={"input": ["in the forward pass"]}))
            await until(held_encoder.entered.is_set)
            waiting = [asyncio.ensure_future(http.post("/v1/embeddings", json={"input": [f"q{i}a", f"q{i}b"]}))
                       for i in range(2)]
            await until(lambda: _equals(queue_depth(http), 4.0))
            refused = await http.post("/v1/embeddings", json={"input": ["one more"]})
            assert refused.status_code == 429
            assert refused.headers["Retry-After"] == "1"
            error = refused.json()["error"]
            assert (error["type"], error["code"]) == ("rate_limit_error", "queue_full")
            assert "FLIPMATCH_BATCHING__MAX_QUEUE" in error["message"]
            held_encoder.release()
            assert [r.status_code for r in await asyncio.gather(first, *waiting)] == [200, 200, 200]
            metrics = (await http.get("/metrics")).text
            assert "flipmatch_queue_rejections_total 1.0" in metrics
            assert 'route="/v1/embeddings",status="429"' in metrics

    asyncio.run(scenario())


async def _equals(value, expected) -> bool:
    return (await value) == expected


def test_a_disconnected_client_is_dropped_before_compute(make_settings, held_encoder):
    app = create_app(make_settings(batching={"max_wait_ms": 0, "forward_workers": 1,
                                                   "forward_processes": False}), encoder=held_encoder)

    async def call_and_disconnect(disconnect: asyncio.Event) -> list[dict]:
        """A raw ASGI call whose client disconnects when `disconnect` is set."""
        body = json.dumps({"input": ["abandoned by its client"]}).encode()
        sent: list[dict] = []
        delivered = False

        async def receive() -> dict:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            await disconnect.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict) -> None:
            sent.append(message)

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": "/v1/embeddings", "raw_path": b"/v1/embeddings", "query_string": b"",
                 "root_path": "", "headers": [(b"content-type", b"application/json"), (b"host", b"test")],
                 "client": ("127.0.0.1", 1), "server": ("test", 80), "state": {}}
        await app(scope, receive, send)
        return sent

    async def scenario() -> None:
        async with running(app) as http:
            held_encoder.hold()
            blocker = asyncio.ensure_future(http.post("/v1/embeddings", json={"input": ["blocker"]}))
            await until(held_encoder.entered.is_set)
            disconnect = asyncio.Event()
            abandoned = asyncio.ensure_future(call_and_disconnect(disconnect))
            await until(lambda: _equals(queue_depth(http), 1.0))
            disconnect.set()
            sent = await asyncio.wait_for(abandoned, 10)
            assert sent[0]["status"] == 499  # not a 5xx: a client going away must not page anyone
            held_encoder.release()
            assert (await blocker).status_code == 200
            assert (await http.post("/v1/embeddings", json={"input": ["after"]})).status_code == 200
            metrics = (await http.get("/metrics")).text
            assert "flipmatch_dropped_texts_total 1.0" in metrics
        assert held_encoder.computed("blocker") and held_encoder.computed("after")
        assert not held_encoder.computed("abandoned by its client")

    asyncio.run(scenario())
