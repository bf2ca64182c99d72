"""A TCP proxy in front of the store that counts the MongoDB wire-protocol messages clients send through it: what
the store sees, measured from outside the processes under test (nx-27017 keeps no `opcounters`)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import Counter

import bson

from chat_api.store.embedded import free_loopback_port

HEADER_BYTES = 16  # messageLength, requestID, responseTo, opCode: every message starts with its own length
OP_MSG = 2013


class CountingProxy:
    """Listens on a free loopback port and forwards each connection to `target`; `messages` counts the client's."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = free_loopback_port()
        self.messages = 0
        self.commands: Counter[str] = Counter()  # "find events", "hello", ...: what the messages were
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name="store-proxy", daemon=True)
        self._started = threading.Event()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    def start(self) -> CountingProxy:
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("the store proxy did not start")
        return self

    def stop(self) -> None:
        """Close the listener and every connection still open, then the proxy's loop."""
        asyncio.run_coroutine_threadsafe(self._shut(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _shut(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        await asyncio.sleep(0.1)  # the forwarding tasks see their connections end

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncio.start_server(self._connection, "127.0.0.1", self.port))
        self._started.set()
        self._loop.run_forever()

    async def _connection(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            store_reader, store_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.close()
            return
        self._writers |= {client_writer, store_writer}
        directions = {
            asyncio.ensure_future(self._count_and_forward(client_reader, store_writer)),
            asyncio.ensure_future(self._forward(store_reader, client_writer)),
        }
        _, pending = await asyncio.wait(directions, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        for writer in (client_writer, store_writer):
            writer.close()
            self._writers.discard(writer)

    async def _count_and_forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                header = await reader.readexactly(HEADER_BYTES)
                body = await reader.readexactly(int.from_bytes(header[:4], "little") - HEADER_BYTES)
                self.messages += 1
                self.commands[command_of(header, body)] += 1
                writer.write(header + body)
                await writer.drain()

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()


def command_of(header: bytes, body: bytes) -> str:
    """The command an OP_MSG carries and, when it names one, its collection: `find events`, `hello`."""
    if int.from_bytes(header[12:16], "little") != OP_MSG or len(body) < 5 or body[4] != 0:
        return "other"
    length = int.from_bytes(body[5:9], "little")
    try:
        document = bson.decode(body[5 : 5 + length])
    except bson.errors.BSONError:
        return "other"
    name, value = next(iter(document.items()), ("other", None))
    return f"{name} {value}" if isinstance(value, str) else name
