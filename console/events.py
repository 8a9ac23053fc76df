"""Fan-out from the ROS thread to the pages' WebSockets (asyncio), thread-safe.

EventHub: the ROS bridge applies updates to the ConsoleState under one lock; every resulting
event goes to each connected page's queue. A page too slow to keep up (queue full) gets a fresh
snapshot instead of the events it missed.

FrameHub: the latest JPEG frame only; each video client sends the newest frame when it is ready
for one, so a slow client skips frames instead of falling behind.
"""
from __future__ import annotations

import asyncio
import threading
from typing import Callable

from qwen_stack.console.state import ConsoleState

_RESYNC = {"type": "_resync"}


class _EventClient:
    def __init__(self, loop: asyncio.AbstractEventLoop, maxsize: int) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[dict] = asyncio.Queue(maxsize=maxsize)

    def put(self, event: dict) -> None:  # runs in the client's event loop
        if self.queue.full():
            while not self.queue.empty():
                self.queue.get_nowait()
            event = _RESYNC
        self.queue.put_nowait(event)


class EventHub:
    def __init__(self, state: ConsoleState, client_queue_size: int = 512) -> None:
        self.state = state
        self._lock = threading.Lock()
        self._clients: set[_EventClient] = set()
        self._queue_size = client_queue_size

    def update(self, apply: Callable[..., object], *args) -> None:
        """Run `apply(*args)` (a ConsoleState method) under the lock; push the event(s) it returns."""
        with self._lock:
            result = apply(*args)
            events = result if isinstance(result, list) else [result]
            for event in events:
                if event is None:
                    continue
                for client in list(self._clients):
                    try:
                        client.loop.call_soon_threadsafe(client.put, event)
                    except RuntimeError:        # its loop is closed: the page is gone
                        self._clients.discard(client)

    def snapshot(self) -> dict:
        with self._lock:
            return self.state.snapshot()

    def read(self, query: Callable[[ConsoleState], object]) -> object:
        """`query(state)` under the lock (a consistent read from any thread)."""
        with self._lock:
            return query(self.state)

    def subscribe(self) -> tuple[_EventClient, dict]:
        """A queue for the calling event loop and the snapshot it starts from (atomically)."""
        client = _EventClient(asyncio.get_running_loop(), self._queue_size)
        with self._lock:
            self._clients.add(client)
            return client, self.state.snapshot()

    def unsubscribe(self, client: _EventClient) -> None:
        with self._lock:
            self._clients.discard(client)

    async def next_event(self, client: _EventClient) -> dict:
        event = await client.queue.get()
        return self.snapshot() if event is _RESYNC else event

    @property
    def client_count(self) -> int:
        with self._lock:
            return len(self._clients)


class FrameHub:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._frame: bytes | None = None
        self._seq = 0
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()

    @property
    def seq(self) -> int:
        with self._lock:
            return self._seq

    def publish(self, jpeg: bytes) -> None:
        with self._lock:
            self._frame, self._seq = jpeg, self._seq + 1
            waiters = list(self._waiters)
        for loop, ready in waiters:
            try:
                loop.call_soon_threadsafe(ready.set)
            except RuntimeError:
                pass

    def latest(self) -> tuple[int, bytes | None]:
        with self._lock:
            return self._seq, self._frame

    async def wait_newer(self, seq: int) -> tuple[int, bytes]:
        """The newest frame with a sequence number above `seq` (waits for one)."""
        ready = asyncio.Event()
        key = (asyncio.get_running_loop(), ready)
        with self._lock:
            self._waiters.add(key)
        try:
            while True:
                cur, frame = self.latest()
                if cur > seq and frame is not None:
                    return cur, frame
                await ready.wait()
                ready.clear()
        finally:
            with self._lock:
                self._waiters.discard(key)
