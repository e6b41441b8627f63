"""The delivery outbox contract (every store adapter): enqueued with the events, claimed per
target with a lease, outcomes recorded only while the claim holds, replay, counts."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from iotman.storage.ports import AppendBatch, DeliveryResult, Store
from tests.contracts.test_store_contract import T0, factory  # noqa: F401 - the adapter fixture

HOOK = "webhook:h"


@pytest.fixture
def store(factory) -> Iterator[Store]:  # type: ignore[no-untyped-def]  # noqa: F811
    s = factory()
    s.open()
    yield s
    s.close()


def append(store: Store, ws: int, count: int, matching: list[int]) -> None:
    store.append(
        AppendBatch(
            workspace_id=ws,
            source="s",
            payloads=[f'{{"n":{i}}}' for i in range(count)],
            metadata="{}",
            received_at_us=T0,
            deliveries=[(i, HOOK) for i in matching],
        )
    )


def test_deliveries_are_enqueued_with_their_events_and_claimed_per_target(store: Store) -> None:
    ws = store.create_workspace("acme", "u-1", T0).id
    append(store, ws, 5, [0, 2, 4])
    claimed = store.claim_deliveries(T0, 10_000_000, [(ws, HOOK, 2), (ws, "webhook:other", 5)])
    assert [d.seq for d in claimed] == [1, 3]
    assert all(d.lease_until_us == T0 + 10_000_000 for d in claimed)
    # held: a second claim gets only the rest
    assert [d.seq for d in store.claim_deliveries(T0, 10_000_000, [(ws, HOOK, 10)])] == [5]
    assert store.delivery_counts(ws, HOOK) == {"pending": 3, "delivered": 0, "dead": 0}


def test_an_outcome_counts_only_while_its_claim_holds(store: Store) -> None:
    ws = store.create_workspace("acme", "u-1", T0).id
    append(store, ws, 1, [0])
    first = store.claim_deliveries(T0, 1_000_000, [(ws, HOOK, 1)])[0]
    # the lease ran out and another sender claimed it again
    second = store.claim_deliveries(T0 + 2_000_000, 1_000_000, [(ws, HOOK, 1)])[0]
    assert second.id == first.id
    store.finish_deliveries([DeliveryResult(first.id, first.lease_until_us, "dead", error="late")], T0 + 2_100_000)
    row = store.list_deliveries(ws, HOOK, None, None, 10)[0]
    assert (row.state, row.attempts) == ("pending", 0), "a lapsed claim's outcome was recorded"
    done = DeliveryResult(second.id, second.lease_until_us, "delivered", status=200, latency_us=1500)
    store.finish_deliveries([done], T0 + 2_200_000)
    store.finish_deliveries([done], T0 + 2_300_000)  # written twice (a retried flush): counted once
    row = store.list_deliveries(ws, HOOK, None, None, 10)[0]
    assert (row.state, row.attempts, row.last_status, row.last_latency_us) == ("delivered", 1, 200, 1500)


def test_dead_letters_replay_with_fresh_attempts(store: Store) -> None:
    ws = store.create_workspace("acme", "u-1", T0).id
    append(store, ws, 2, [0, 1])
    for d in store.claim_deliveries(T0, 1_000_000, [(ws, HOOK, 5)]):
        store.finish_deliveries([DeliveryResult(d.id, d.lease_until_us, "dead", error="boom")], T0)
    assert store.delivery_counts(ws, HOOK)["dead"] == 2
    dead = store.list_deliveries(ws, HOOK, "dead", None, 10)
    assert store.replay_deliveries(ws, HOOK, dead[0].id, T0 + 1) == 1
    assert store.replay_deliveries(ws, HOOK, None, T0 + 1) == 1
    assert store.delivery_counts(ws, HOOK) == {"pending": 2, "delivered": 0, "dead": 0}
    assert all(d.attempts == 0 for d in store.claim_deliveries(T0 + 1, 1_000_000, [(ws, HOOK, 5)]))
    store.delete_deliveries(ws, HOOK)
    assert store.delivery_counts(ws, HOOK) == {"pending": 0, "delivered": 0, "dead": 0}
