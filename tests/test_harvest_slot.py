"""The harvest's limiter of requests in flight (`_Slot`), under asyncio and trio."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from zigziik.zigna.harvest._run import _Slot

pytestmark = [pytest.mark.anyio, pytest.mark.both_backends]


async def holder(slot: _Slot, name: str, log: list[str], release: anyio.Event) -> None:
    async with slot:
        log.append(name)
        await release.wait()


async def test_at_most_total_hold_and_waiters_get_tokens_in_order() -> None:
    slot = _Slot(2)
    log: list[str] = []
    releases = {name: anyio.Event() for name in "abcde"}
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for name in "abcde":
                tg.start_soon(holder, slot, name, log, releases[name])
                await anyio.wait_all_tasks_blocked()
            assert log == ["a", "b"] and slot.held == 2
            releases["b"].set()
            await anyio.wait_all_tasks_blocked()
            assert log == ["a", "b", "c"] and slot.held == 2
            releases["a"].set()
            await anyio.wait_all_tasks_blocked()
            assert log == ["a", "b", "c", "d"] and slot.held == 2  # the first waiter first
            releases["c"].set()
            await anyio.wait_all_tasks_blocked()
            assert log == ["a", "b", "c", "d", "e"] and slot.held == 2
            releases["d"].set()
            releases["e"].set()
    assert slot.held == 0


async def test_a_waiter_cancelled_before_its_turn_leaves_the_queue() -> None:
    slot = _Slot(1)
    log: list[str] = []
    first, later = anyio.Event(), anyio.Event()
    later.set()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(holder, slot, "a", log, first)
            await anyio.wait_all_tasks_blocked()
            with anyio.CancelScope() as scope:
                scope.cancel()
                await holder(slot, "cancelled", log, later)
            tg.start_soon(holder, slot, "b", log, later)
            await anyio.wait_all_tasks_blocked()
            assert log == ["a"]
            first.set()
    assert log == ["a", "b"] and slot.held == 0


async def test_a_token_handed_to_a_waiter_cancelled_meanwhile_goes_to_the_next() -> None:
    slot = _Slot(1)
    log: list[str] = []
    release, done = anyio.Event(), anyio.Event()
    done.set()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(holder, slot, "a", log, release)
            await anyio.wait_all_tasks_blocked()
            scope = anyio.CancelScope()

            async def cancelled_waiter() -> None:
                with scope:
                    await holder(slot, "cancelled", log, done)

            tg.start_soon(cancelled_waiter)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(holder, slot, "c", log, done)
            await anyio.wait_all_tasks_blocked()
            # In one step: the token goes to the waiter, which is cancelled before it runs.
            release.set()
            await anyio.lowlevel.checkpoint()  # "a" releases: the waiter is handed the token
            scope.cancel()
    assert "cancelled" not in log or log.index("cancelled") < log.index("c")
    assert "c" in log and slot.held == 0


async def test_a_changed_total_holds_back_or_lets_in_waiters() -> None:
    slot = _Slot(3)
    log: list[str] = []
    releases = {name: anyio.Event() for name in "abcde"}
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for name in "abc":
                tg.start_soon(holder, slot, name, log, releases[name])
                await anyio.wait_all_tasks_blocked()
            slot.total = 1  # the three keep their tokens
            for name in "de":
                tg.start_soon(holder, slot, name, log, releases[name])
                await anyio.wait_all_tasks_blocked()
            releases["a"].set()
            releases["b"].set()
            await anyio.wait_all_tasks_blocked()
            assert log == ["a", "b", "c"] and slot.held == 1  # "c" alone, at the new total
            slot.total = 3  # room for both at once
            await anyio.wait_all_tasks_blocked()
            assert sorted(log[3:]) == ["d", "e"] and slot.held == 3
            for event in releases.values():
                event.set()
    assert slot.held == 0
