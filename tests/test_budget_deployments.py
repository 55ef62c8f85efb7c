"""The Redis store in the deployments users run it in: TLS, Cluster and Sentinel, on real servers.

Every server is a real ``redis-server`` (Debian's 7.x; ``.ci/run`` installs it) that these tests
start on 127.0.0.1 and free ports, once per module, and stop. TLS certificates are made by
trustme. Nothing of the store is mocked: the budget's calls go through `RedisBudgetStore` with
its own client (a ``rediss://`` URL) or a client the test builds as a user would
(``redis.asyncio.Redis(ssl=True, ...)``, ``RedisCluster``, ``Sentinel(...).master_for``).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import pytest
import redis.asyncio as aioredis
from _redis import RedisClusterNodes, RedisServer, SentinelServer, TlsFiles
from _workers import Workers
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.crc import key_slot

from zigziik import (
    BudgetExhaustedError,
    BudgetStoreError,
    ConfigurationError,
    DailyBudget,
    RateLimit,
    RedisBudgetStore,
    RetryPolicy,
    ZignaClient,
    budget_store_from_url,
)
from zigziik._redis_lua import EXCHANGE_SHA
from zigziik.ratelimit import key_scope
from zigziik.testing import DEMO_API_KEY, FakeZigna, serve

pytestmark = [pytest.mark.anyio, pytest.mark.slow, pytest.mark.timeout(120)]
SECRET = "hunter2-tls-secret"


def wait_until(condition: object, what: str, timeout: float = 30.0) -> None:
    """Poll ``condition()`` (a callable) until it is true; generous for loaded machines."""
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[FakeZigna, str]]:
    fake = FakeZigna(orders=2, pictures_per_order=1, picture_size=500, daily_limit=None)
    with serve(fake.app) as origin:
        yield fake, origin + "/v2"


async def spend(budget: DailyBudget, calls: int, rate_limit: RateLimit | None = None) -> None:
    """Reserve and settle ``calls`` calls, each granted."""
    for _ in range(calls):
        decision = await budget.reserve()
        assert decision.granted
        await budget.settle(rate_limit, lease=decision.lease)


async def fails_closed(store: RedisBudgetStore, served: tuple[FakeZigna, str]) -> str:
    """A client call on ``store`` raises `BudgetStoreError` and sends nothing; its message."""
    fake, base = served
    before = fake.calls
    async with ZignaClient(DEMO_API_KEY, base_url=base, budget=DailyBudget(store=store)) as zigna:
        with pytest.raises(BudgetStoreError) as info:
            await zigna.orders.get(fake.order_ids[0])
    assert fake.calls == before, "nothing was sent"
    text = str(info.value)
    assert info.value.store == store.name and store.name in text
    assert DEMO_API_KEY not in text and SECRET not in text and SECRET not in repr(store)
    return text


# -- TLS ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    directory = tmp_path_factory.mktemp("redis-tls")
    server = RedisServer(directory, tls=TlsFiles(directory / "tls"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def tls_flushed(tls: RedisServer) -> RedisServer:
    assert tls.command("FLUSHALL").startswith(b"+OK")
    return tls


def tls_used(server: RedisServer, key: str) -> int:
    """The ``used`` field of ``key``, read over TLS with the test's own socket."""
    reply = server.command("HGET", key, "used").split(b"\r\n")
    return int(reply[1])


async def test_a_rediss_url_with_its_ca_in_the_query_shares_a_budget_over_tls(
    tls_flushed: RedisServer, served: tuple[FakeZigna, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The one-line setting of a service: ``ZIGZIIK_BUDGET_STORE=rediss://...?ssl_ca_certs=``."""
    assert tls_flushed.tls is not None
    url = f"rediss://127.0.0.1:{tls_flushed.port}/0?ssl_ca_certs={tls_flushed.tls.ca}"
    store = budget_store_from_url(url)
    assert isinstance(store, RedisBudgetStore)
    budget = DailyBudget(5, store=store, scope="tls")
    await spend(budget, 2)
    await spend(budget, 1, RateLimit(limit=500, remaining=1, reset_after=3600))
    snapshot = await budget.snapshot()
    # The server's lower Remaining wins over the 3 counted here: 4 used of the cap of 5.
    assert (snapshot.limit, snapshot.used, snapshot.in_flight) == (5, 4, 0)
    assert tls_used(tls_flushed, store.key("tls")) == 4, "the count is in the TLS server"
    await store.aclose()

    fake, base = served
    before = fake.calls
    monkeypatch.setenv("ZIGZIIK_BUDGET_STORE", url)
    monkeypatch.setenv("ZIGZIIK_DAILY_LIMIT", "3")
    async with ZignaClient(DEMO_API_KEY, base_url=base) as zigna:
        for _ in range(3):
            await zigna.orders.get(fake.order_ids[0])
        with pytest.raises(BudgetExhaustedError):
            await zigna.orders.get(fake.order_ids[0])
        assert zigna.budget.used == 3
    assert fake.calls - before == 3
    assert tls_used(tls_flushed, RedisBudgetStore(url).key(key_scope(DEMO_API_KEY))) == 3


async def test_a_callers_tls_client_reserves_settles_and_stays_open(
    tls_flushed: RedisServer,
) -> None:
    assert tls_flushed.tls is not None
    client = aioredis.Redis(
        host="127.0.0.1", port=tls_flushed.port, ssl=True, ssl_ca_certs=str(tls_flushed.tls.ca)
    )
    store = RedisBudgetStore(client)
    assert store.name == f"rediss://127.0.0.1:{tls_flushed.port}/0"
    budget = DailyBudget(3, store=store, scope="own")
    await spend(budget, 3)
    with pytest.raises(BudgetExhaustedError):
        await budget.reserve()
    snapshot = await budget.snapshot()
    assert (snapshot.used, snapshot.remaining, snapshot.in_flight) == (3, 0, 0)
    assert tls_used(tls_flushed, store.key("own")) == 3
    await store.aclose()
    assert await client.ping(), "zigziik never closes a client it was handed"
    await client.aclose()


async def test_a_wrong_ca_fails_closed_naming_the_store_without_its_password(
    tls_flushed: RedisServer, served: tuple[FakeZigna, str], tmp_path: Path
) -> None:
    other = TlsFiles(tmp_path / "other-ca")
    port = tls_flushed.port
    url = f"rediss://zig:{SECRET}@127.0.0.1:{port}/0?ssl_ca_certs={other.ca}"
    store = RedisBudgetStore(url, timeout=5.0)
    text = await fails_closed(store, served)
    assert store.name == f"rediss://zig:***@127.0.0.1:{port}/0?ssl_ca_certs={other.ca}"
    assert "certificate verify failed" in text.lower()
    await store.aclose()

    # No retries: redis-py 8's default (10, with backoff) gives up after some 4-5 s, which
    # races the store's timeout (then the message says "no answer within 5 s" instead).
    client = aioredis.Redis(
        host="127.0.0.1",
        port=port,
        password=SECRET,
        ssl=True,
        ssl_ca_certs=str(other.ca),
        retry=Retry(NoBackoff(), 0),
    )
    store = RedisBudgetStore(client, timeout=5.0)
    assert "certificate verify failed" in (await fails_closed(store, served)).lower()
    await client.aclose()
    assert tls_used_or_none(tls_flushed) is None, "no budget was written anywhere"


def tls_used_or_none(server: RedisServer) -> int | None:
    keys = server.command("KEYS", "*")
    return None if keys.startswith(b"*0") else len(keys)


async def test_a_plain_redis_url_on_the_tls_port_fails_closed(
    tls_flushed: RedisServer, served: tuple[FakeZigna, str]
) -> None:
    store = RedisBudgetStore(f"redis://127.0.0.1:{tls_flushed.port}/0", timeout=3.0)
    await fails_closed(store, served)
    await store.aclose()


class BrokenClient(aioredis.Redis):
    """A real client that fails as redis-py 8.1's RedisCluster does when its first commands
    race its start (not a RedisError)."""

    async def evalsha(self, *args: object) -> object:  # type: ignore[override]
        raise AttributeError("'NoneType' object has no attribute 'writelines'")


async def test_a_callers_client_that_breaks_unexpectedly_fails_closed(
    tls_flushed: RedisServer, served: tuple[FakeZigna, str]
) -> None:
    assert tls_flushed.tls is not None
    client = BrokenClient(
        host="127.0.0.1", port=tls_flushed.port, ssl=True, ssl_ca_certs=str(tls_flushed.tls.ca)
    )
    text = await fails_closed(RedisBudgetStore(client), served)
    assert "AttributeError" in text and "nothing was sent" in text
    await client.aclose()


@pytest.mark.parametrize(
    ("query", "named"),
    [("ssl_ca_cert=/etc/ca.pem", "ssl_ca_cert"), ("db=first", "db")],
)
def test_an_unknown_or_bad_url_option_is_a_configuration_error(query: str, named: str) -> None:
    with pytest.raises(ConfigurationError, match=named) as info:
        budget_store_from_url(f"rediss://u:{SECRET}@cache:6380/0?{query}")
    assert SECRET not in str(info.value)


def test_a_password_in_the_url_query_is_hidden_from_the_name() -> None:
    store = RedisBudgetStore(
        f"rediss://cache:6380/0?password={SECRET}&ssl_ca_certs=/ca.pem&ssl_password={SECRET}x"
    )
    assert SECRET not in store.name and SECRET not in repr(store)
    assert store.name == "rediss://cache:6380/0?password=***&ssl_ca_certs=/ca.pem&ssl_password=***"
    assert SECRET in set(store.secrets()) and SECRET + "x" in set(store.secrets())


# -- Cluster -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterNodes]:
    nodes = RedisClusterNodes(tmp_path_factory.mktemp("redis-cluster"))
    try:
        nodes.start()
        yield nodes
    finally:
        nodes.stop()


@pytest.fixture
async def cluster_client(cluster: RedisClusterNodes) -> AsyncIterator[RedisCluster]:
    cluster.wait_ok()  # a test may have restarted a node
    for node in cluster.nodes:
        assert node.command("FLUSHALL").startswith(b"+OK")
    client = RedisCluster(host="127.0.0.1", port=cluster.nodes[0].port)
    yield client
    await client.aclose()


def scopes_on_every_node(store: RedisBudgetStore, cluster: RedisClusterNodes) -> dict[str, int]:
    """One scope per node (its hash slot on that node's range): scope -> slot."""
    found: dict[str, int] = {}
    owners: set[int] = set()
    for number in range(1000):
        scope = f"scope-{number}"
        slot = key_slot(store.key(scope).encode())
        assert slot == key_slot(scope.encode()), "the key's slot is its scope's alone"
        owner = cluster.owner(slot).port
        if owner not in owners:
            owners.add(owner)
            found[scope] = slot
        if len(found) == len(cluster.nodes):
            return found
    raise AssertionError("no scope for every node")


def node_used(cluster: RedisClusterNodes, store: RedisBudgetStore, scope: str, slot: int) -> int:
    """The scope's ``used``, read on the node that owns its slot."""
    owner = cluster.owner(slot)
    assert owner.command("CLUSTER", "COUNTKEYSINSLOT", str(slot)).startswith(b":1")
    return int(owner.command("HGET", store.key(scope), "used").split(b"\r\n")[1])


def script_cached(node: RedisServer) -> bool:
    return node.command("SCRIPT", "EXISTS", EXCHANGE_SHA).startswith(b"*1\r\n:1")


async def test_a_cluster_keeps_each_scope_on_its_node_and_counts_each_exactly(
    cluster: RedisClusterNodes, cluster_client: RedisCluster
) -> None:
    store = RedisBudgetStore(cluster_client)
    assert store.name == f"redis+cluster://127.0.0.1:{cluster.nodes[0].port}"
    scopes = scopes_on_every_node(store, cluster)
    granted = dict.fromkeys(scopes, 0)
    refused = dict.fromkeys(scopes, 0)

    async def one(budget: DailyBudget) -> None:
        try:
            decision = await budget.reserve()
        except BudgetExhaustedError:
            refused[budget.scope] += 1
            return
        granted[budget.scope] += 1
        await anyio.sleep(0.001)
        await budget.settle(None, lease=decision.lease)

    budgets = [DailyBudget(4, store=store, scope=scope) for scope in scopes]
    async with anyio.create_task_group() as tg:
        for index in range(30):
            tg.start_soon(one, budgets[index % len(budgets)])
    assert granted == dict.fromkeys(scopes, 4) and refused == dict.fromkeys(scopes, 6)
    for budget in budgets:
        snapshot = await budget.snapshot()
        assert (snapshot.used, snapshot.remaining, snapshot.in_flight) == (4, 0, 0)
    for scope, slot in scopes.items():
        assert node_used(cluster, store, scope, slot) == 4, f"{scope} is on its own node"
    await store.aclose()
    assert await cluster_client.ping(), "zigziik never closes a client it was handed"


async def test_a_cluster_runs_the_script_again_after_a_script_flush_and_a_node_restart(
    cluster: RedisClusterNodes, cluster_client: RedisCluster
) -> None:
    store = RedisBudgetStore(cluster_client, timeout=5.0)
    scopes = scopes_on_every_node(store, cluster)
    budgets = {scope: DailyBudget(10, store=store, scope=scope) for scope in scopes}
    for budget in budgets.values():
        await spend(budget, 1)
    assert all(script_cached(node) for node in cluster.nodes)
    for node in cluster.nodes:
        assert node.command("SCRIPT", "FLUSH").startswith(b"+OK")
    assert not any(script_cached(node) for node in cluster.nodes)
    for budget in budgets.values():
        await spend(budget, 1)  # NOSCRIPT on each node: loaded again, run once
    for scope, slot in scopes.items():
        assert node_used(cluster, store, scope, slot) == 2

    scope, slot = next(iter(scopes.items()))
    victim = cluster.owner(slot)
    victim.stop(save=True)  # SHUTDOWN SAVE: its data comes back, its scripts do not
    victim.start()
    cluster.wait_ok()
    assert not script_cached(victim)
    store_errors = 0
    deadline = time.monotonic() + 30
    while True:  # the client may see the restart once (fail closed), then finds the node again
        try:
            decision = await budgets[scope].reserve()
        except BudgetStoreError:
            store_errors += 1
            assert time.monotonic() < deadline, "the store never worked again"
            await anyio.sleep(0.1)
            continue
        assert decision.granted
        await budgets[scope].settle(None, lease=decision.lease)
        break
    assert store_errors <= 3
    assert script_cached(victim)
    assert node_used(cluster, store, scope, slot) == 3, "the count survived the restart"
    assert (await budgets[scope].snapshot()).used == 3
    await store.aclose()


def test_two_processes_on_one_scope_through_a_cluster_send_exactly_the_limit(
    cluster: RedisClusterNodes,
) -> None:
    cluster.wait_ok()
    for node in cluster.nodes:
        assert node.command("FLUSHALL").startswith(b"+OK")
    # 20 ms an answer: 60 calls take one process's 4 tasks 0.3 s at least, so the two overlap
    # even when one starts late on a loaded machine.
    fake = FakeZigna(
        orders=2, pictures_per_order=1, picture_size=500, daily_limit=None, latency=0.02
    )
    with serve(fake.app) as origin:
        spec = f"redis-cluster:127.0.0.1:{cluster.nodes[1].port}"
        args = ["--store", spec, "--base", origin + "/v2", "--order", fake.order_ids[0]]
        workers = Workers(2, *args, "--limit", "60", "--tasks", "4")
        try:
            results = workers.ready().go().results()
        finally:
            workers.kill()
    assert fake.calls == 60, "the server saw exactly the shared budget"
    sent = [int(r["sent"]) for r in results]  # type: ignore[call-overload]
    assert sum(sent) == 60
    assert all(sent), f"both processes spent from it: {results}"


# -- Sentinel ----------------------------------------------------------------------------------

SERVICE = "zigziik-budget"


class SentinelSet:
    """A master, its replica and one sentinel watching them (quorum 1)."""

    def __init__(self, directory: Path) -> None:
        self.master = RedisServer(directory / "master")
        self.replica = RedisServer(
            directory / "replica", args=("--replicaof", "127.0.0.1", str(self.master.port))
        )
        self.sentinel = SentinelServer(directory / "sentinel", SERVICE, self.master.port)

    def start(self) -> None:
        self.master.start()
        self.replica.start()
        wait_until(
            lambda: self.replica.info("replication").get("master_link_status") == "up",
            "the replica to follow the master",
        )
        self.sentinel.start()
        wait_until(self.settled, "the sentinel to see the master and its replica")

    def settled(self) -> bool:
        """The sentinel sees its master well, with one replica."""
        state = self.sentinel.info("sentinel").get("master0", "")
        return "status=ok" in state and "slaves=1" in state

    def by_port(self, port: int) -> RedisServer:
        return self.master if port == self.master.port else self.replica

    def client(self) -> tuple[Sentinel, aioredis.Redis]:
        sentinel = Sentinel([("127.0.0.1", self.sentinel.port)], socket_timeout=5.0)
        return sentinel, sentinel.master_for(SERVICE, socket_timeout=5.0)

    def stop(self) -> None:
        for server in (self.sentinel, self.replica, self.master):
            server.kill()


async def close(sentinel: Sentinel, client: aioredis.Redis) -> None:
    await client.aclose()
    for one in sentinel.sentinels:
        await one.aclose()


@pytest.fixture(scope="module")
def sentinels(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSet]:
    servers = SentinelSet(tmp_path_factory.mktemp("redis-sentinel"))
    try:
        servers.start()
        yield servers
    finally:
        servers.stop()


async def test_a_sentinels_master_for_client_counts_exactly_and_its_replica_has_the_count(
    sentinels: SentinelSet,
) -> None:
    sentinel, client = sentinels.client()
    store = RedisBudgetStore(client)
    assert store.name == f"redis+sentinel://{SERVICE}/0"
    budget = DailyBudget(5, store=store, scope="sentinel")
    granted = refused = 0

    async def one() -> None:
        nonlocal granted, refused
        try:
            decision = await budget.reserve()
        except BudgetExhaustedError:
            refused += 1
            return
        granted += 1
        await anyio.sleep(0.001)
        await budget.settle(RateLimit(remaining=1000), lease=decision.lease)

    async with anyio.create_task_group() as tg:
        for _ in range(12):
            tg.start_soon(one)
    assert (granted, refused) == (5, 7)
    snapshot = await budget.snapshot()
    assert (snapshot.used, snapshot.remaining, snapshot.in_flight) == (5, 0, 0)
    master = sentinels.by_port(sentinels.sentinel.master())
    replica = sentinels.replica if master is sentinels.master else sentinels.master
    key = store.key("sentinel")
    assert master.command("HGET", key, "used") == b"$1\r\n5\r\n"
    wait_until(lambda: replica.command("HGET", key, "used") == b"$1\r\n5\r\n", "replication")
    await store.aclose()
    assert await client.ping(), "zigziik never closes a client it was handed"
    await close(sentinel, client)


async def test_a_sentinel_failover_while_the_budget_is_in_use_never_sends_more_than_the_limit(
    tmp_path: Path,
) -> None:
    """Three tasks spend a budget of 240 at about 40 calls a second while the sentinel hands
    the master's role to the replica: the calls never exceed the limit, and the new master
    counts every call sent (none was counted only on the old master).

    ``replicas=1`` is what makes it hold: replication is asynchronous, and the old master
    goes on taking writes until the sentinel turns it into a replica, seconds later; those
    writes are then lost. Without it the run sent all 240 calls while the new master had
    counted 27 of them (the next process would have got 213 more)."""
    servers = SentinelSet(tmp_path)
    servers.start()
    limit = 240
    fake = FakeZigna(
        orders=2, pictures_per_order=1, picture_size=500, daily_limit=None, latency=0.02
    )
    sentinel, client = servers.client()
    store = RedisBudgetStore(client, timeout=3.0, replicas=1)
    store_errors = 0
    try:
        with serve(fake.app) as origin:
            budget = DailyBudget(limit, store=store)
            async with ZignaClient(
                DEMO_API_KEY, base_url=origin + "/v2", budget=budget, retry=RetryPolicy.never()
            ) as zigna:

                async def task() -> None:
                    nonlocal store_errors
                    deadline = anyio.current_time() + 60
                    while anyio.current_time() < deadline:
                        try:
                            await zigna.orders.get(fake.order_ids[0])
                        except BudgetExhaustedError:
                            return  # no headers: nothing can give calls back today
                        except BudgetStoreError:
                            store_errors += 1
                        await anyio.sleep(0.05)

                old = servers.sentinel.master()
                async with anyio.create_task_group() as tg:
                    for _ in range(3):
                        tg.start_soon(task)
                    await anyio.sleep(0.5)
                    reply = await anyio.to_thread.run_sync(
                        servers.sentinel.command, "SENTINEL", "FAILOVER", SERVICE
                    )
                    assert reply.startswith(b"+OK"), reply
                    started = fake.calls
                    await anyio.to_thread.run_sync(
                        lambda: wait_until(lambda: servers.sentinel.master() != old, "failover")
                    )
                    switched = fake.calls
        new = servers.sentinel.master()
        assert 0 < started <= switched < limit, "the failover happened while the budget was in use"
        assert fake.calls <= limit, "never more calls than the limit"
        used = int(servers.by_port(new).command("HGET", store.key(budget.scope), "used")[4:-2])
        print(
            f"calls {fake.calls} (failover {started}-{switched}) used {used} errors {store_errors}"
        )
        assert used >= fake.calls, "the new master counts every call that was sent"
    finally:
        await store.aclose()
        await close(sentinel, client)
        servers.stop()


@pytest.mark.parametrize("own", ["url", "url-options", "callers-client"])
async def test_replicas_fails_closed_on_a_server_without_replicas(
    tls_flushed: RedisServer, served: tuple[FakeZigna, str], own: str
) -> None:
    assert tls_flushed.tls is not None
    client = None
    url = f"rediss://127.0.0.1:{tls_flushed.port}/0?ssl_ca_certs={tls_flushed.tls.ca}"
    if own == "url":
        store = RedisBudgetStore(url, timeout=2.0, replicas=1)
    elif own == "url-options":  # what $ZIGZIIK_BUDGET_STORE can say
        made = budget_store_from_url(f"{url}&zigziik_timeout=2&zigziik_replicas=1")
        assert isinstance(made, RedisBudgetStore)
        store = made
    else:
        client = aioredis.Redis(
            host="127.0.0.1", port=tls_flushed.port, ssl=True, ssl_ca_certs=str(tls_flushed.tls.ca)
        )
        store = RedisBudgetStore(client, timeout=2.0, replicas=1)
    budget = DailyBudget(5, store=store, scope="lonely")
    # Connected and the script loaded first: the reservation below waits once (500 ms).
    assert (await budget.snapshot()).used == 0, "a view waits for no replica"
    text = await fails_closed(store, served)
    assert "reached 0 of the 1 replica(s) it needs within 500 ms" in text
    with pytest.raises(BudgetStoreError):
        await budget.reserve()
    assert (await budget.snapshot()).used == 1, "the refused reservation stays counted"
    await store.aclose()
    if client is not None:
        await client.aclose()


@pytest.mark.parametrize("own", [True, False], ids=["url", "sentinel-client"])
async def test_replicas_grants_once_the_replica_has_the_reservation(
    sentinels: SentinelSet, own: bool
) -> None:
    master = sentinels.by_port(sentinels.sentinel.master())
    sentinel = client = None
    if own:
        store = RedisBudgetStore(master.url, replicas=1)
    else:
        sentinel, client = sentinels.client()
        store = RedisBudgetStore(client, replicas=1)
    scope = f"replicated-{own}"
    budget = DailyBudget(4, store=store, scope=scope)
    await spend(budget, 4)
    with pytest.raises(BudgetExhaustedError):
        await budget.reserve()
    replica = sentinels.replica if master is sentinels.master else sentinels.master
    # WAIT returned once the replica had each reservation; the last settlement may lag.
    assert int(replica.command("HGET", store.key(scope), "used")[4:-2]) == 4
    await store.aclose()
    if sentinel is not None and client is not None:
        await close(sentinel, client)


@pytest.mark.parametrize("own", [True, False], ids=["url", "callers-client"])
async def test_replicas_runs_the_script_once_again_after_a_script_flush(
    tls_flushed: RedisServer, own: bool
) -> None:
    """After NOSCRIPT (a restarted or flushed server) the script is loaded, then run once and
    WAITed for; with the script there, it runs once. (No replica here: each reservation is
    counted, then refused for want of one.)"""
    assert tls_flushed.tls is not None
    client = None
    if own:
        url = f"rediss://127.0.0.1:{tls_flushed.port}/0?ssl_ca_certs={tls_flushed.tls.ca}"
        store = RedisBudgetStore(url, timeout=2.4, replicas=1)
    else:
        client = aioredis.Redis(
            host="127.0.0.1", port=tls_flushed.port, ssl=True, ssl_ca_certs=str(tls_flushed.tls.ca)
        )
        store = RedisBudgetStore(client, timeout=2.4, replicas=1)
    budget = DailyBudget(10, store=store, scope="flushed")
    # Connected and the script loaded first: no TLS handshake within a bound below. Each
    # reservation then WAITs 600 ms, twice after NOSCRIPT: within its 2.4 s.
    assert (await budget.snapshot()).used == 0
    for reservations, flush in [(1, False), (2, True)]:
        if flush:
            assert tls_flushed.command("SCRIPT", "FLUSH").startswith(b"+OK")
        with pytest.raises(BudgetStoreError, match="reached 0 of the 1 replica"):
            await budget.reserve()
        assert tls_used(tls_flushed, store.key("flushed")) == reservations
    await store.aclose()
    if client is not None:
        await client.aclose()


def test_replicas_is_checked() -> None:
    with pytest.raises(ValueError, match="replicas"):
        RedisBudgetStore("redis://cache:6379/0", replicas=-1)
    with pytest.raises(ValueError, match="replicas"):
        RedisBudgetStore("redis://cache:6379/0", replicas=True)
    cluster = RedisCluster(host="127.0.0.1", port=7000)
    with pytest.raises(ConfigurationError) as info:
        RedisBudgetStore(cluster, replicas=1)
    assert str(info.value) == (
        "replicas= needs WAIT on the connection that ran the script, which a RedisCluster "
        "client cannot promise; use it with a Redis or Sentinel client"
    )


@pytest.mark.parametrize(
    ("timeout", "wait_ms"), [(5.0, 1250), (2.0, 500), (0.01, 2), (0.004, 1), (0.001, 1)]
)
def test_replicas_waits_a_quarter_of_the_timeout_and_at_least_a_millisecond(
    timeout: float, wait_ms: int
) -> None:
    """WAIT's own timeout: twice it (after NOSCRIPT) stays within the operation's; never 0,
    which would make WAIT block until the replicas answer, however long."""
    store = RedisBudgetStore("redis://cache:6379/0", timeout=timeout, replicas=1)
    assert store._wait_ms == wait_ms  # type: ignore[attr-defined]
