"""``python -m benchmarks._scale_server ORDERS PER_ORDER SIZE``: a minimal, fast Zigna API.

Answers the three requests a harvest sends (the order pages, an order's picture list, a
picture) from nothing but the path, so that it serves 100,000 pictures in a few seconds and
holds no state: orders ``S000000`` .., pictures ``order * 1000 + n`` of ``SIZE`` bytes each.
HTTP/1.1 keep-alive on raw asyncio, one process. Prints ``http://127.0.0.1:PORT`` on its
first line of stdout, then serves until stdin closes (or it is killed).
"""

from __future__ import annotations

import asyncio
import json
import sys
from urllib.parse import parse_qs, urlsplit

PAGE = 50


def _order_id(index: int) -> str:
    return f"S{index:06d}"


class _Api:
    def __init__(self, orders: int, per_order: int, size: int) -> None:
        self.orders = orders
        self.per_order = per_order
        self.size = size
        self.body = bytes(range(256)) * (size // 256) + bytes(size % 256)
        self.head = (
            b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: "
            + str(size).encode()
            + b"\r\nX-RateLimit-Limit: 10000000\r\nX-RateLimit-Remaining: 9999999\r\n"
            b"X-RateLimit-Reset: 3600\r\n\r\n"
        )

    def answer(self, target: str) -> bytes:
        parts = urlsplit(target)
        path = parts.path.rstrip("/").split("/")
        # ["", "v2", "orders"] / [.., ID, "pictures"] / [.., ID, "pictures", PID]
        if path[:3] != ["", "v2", "orders"]:
            return _json(404, {"message": "not found"})
        if len(path) == 3:
            query = parse_qs(parts.query)
            skip = int(query.get("skip", ["0"])[0])
            take = int(query.get("take", [str(PAGE)])[0])
            end = min(self.orders, skip + take)
            page = [
                {"id": _order_id(i), "statusId": 5, "created": "2024-05-01T10:00:00"}
                for i in range(skip, end)
            ]
            following = f"/v2/orders?take={take}&skip={end}" if end < self.orders else None
            return _json(
                200, {"response": {"take": take, "skip": skip, "next": following}, "orders": page}
            )
        order = int(path[3][1:])
        if len(path) == 5:
            pictures = [
                {
                    "pictureID": order * 1000 + n,
                    "originalFileName": f"IMG_{n:04d}.jpg",
                    "size": self.size,
                }
                for n in range(self.per_order)
            ]
            return _json(200, {"order": {"id": path[3]}, "pictures": pictures})
        return self.head + self.body


def _json(status: int, value: object) -> bytes:
    body = json.dumps(value).encode()
    reason = b"OK" if status == 200 else b"Not Found"
    return (
        b"HTTP/1.1 "
        + str(status).encode()
        + b" "
        + reason
        + b"\r\nContent-Type: application/json\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\nX-RateLimit-Limit: 10000000\r\nX-RateLimit-Remaining: 9999999\r\n"
        b"X-RateLimit-Reset: 3600\r\n\r\n" + body
    )


async def _main(orders: int, per_order: int, size: int) -> None:
    api = _Api(orders, per_order, size)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                target = head.split(b" ", 2)[1].decode()
                writer.write(api.answer(target))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=256)
    port = server.sockets[0].getsockname()[1]
    print(f"http://127.0.0.1:{port}", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes stdin
    server.close()


if __name__ == "__main__":
    asyncio.run(_main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))
