"""``python -m benchmarks._fake_server PORT ORDERS``: the fake Zigna, alone in its process.

The fallback server for the API-call measures when nginx is not available. Running it in a
separate process keeps its request handling off the benchmark's interpreter (and its GIL).
"""

from __future__ import annotations

import sys

import uvicorn

from zigziik.testing import FakeZigna


def main() -> None:
    port, orders = int(sys.argv[1]), int(sys.argv[2])
    fake = FakeZigna(orders=orders, pictures_per_order=0, daily_limit=10_000_000, seed=5)
    uvicorn.run(
        fake.app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        server_header=False,
    )


if __name__ == "__main__":
    main()
