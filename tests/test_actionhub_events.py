"""ActionHub events and recommendations over HTTP, as shared/spec/actionhub.md shapes them:
``POST /events``, ``GET /users/{id}/events``, ``GET /users/{id}/actions``, ``PUT /users/{id}/rebase``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from labelhub.actionhub import recommender
from labelhub.app import create_app
from labelhub.core import db as dbmod
from labelhub.core.config import Settings
from tests.actionhub_helpers import ActionHub
from tests.conftest import table_rows


def event(user: str, ts: str, asset: str, kind: str = "view", **extra: Any) -> dict[str, Any]:
    return {"user_id": user, "event_timestamp": ts, "event_type": kind, "asset_id": asset, **extra}


async def post_events(ah: ActionHub, events: list[dict[str, Any]], **params: Any) -> httpx.Response:
    return await ah.http.post(
        "/events", json={"events": events}, params=params, headers=ah.headers()
    )


async def actions(ah: ActionHub, user: str, **params: Any) -> list[dict[str, Any]]:
    r = await ah.http.get(f"/users/{user}/actions", params=params, headers=ah.headers())
    assert r.status_code == 200, r.text
    found: list[dict[str, Any]] = r.json()["actions"]
    return found


def sequences(users: int = 6) -> list[dict[str, Any]]:
    """Users walking a1 -> a2 -> a3 (even users stop at a2), one day a step."""
    return [
        event(f"u{u}", f"2026-01-0{step + 1}T00:00:00Z", f"a{step + 1}")
        for u in range(users)
        for step in range(2 + u % 2)
    ]


def count(database: dbmod.Database, table: str) -> int:
    return int(table_rows(database, f"SELECT count(*) FROM {table}")[0][0])


# --- POST /events ---------------------------------------------------------------------------


async def test_post_events_records_and_answers_a_sentence(ah: ActionHub) -> None:
    r = await post_events(ah, sequences())
    assert r.status_code == 200
    assert r.json() == {"result": "15 events recorded for 6 users; recommendations updated"}
    r = await post_events(ah, [event("u0", "2026-01-09T00:00:00Z", "a9")], queue_updates="true")
    assert r.json() == {"result": "1 event recorded for 1 user; recommendations queued for update"}
    r = await post_events(
        ah, [event("u0", "2026-01-09T00:00:00Z", "a9")], process_user_actions="false"
    )
    assert r.json() == {"result": "1 event recorded for 1 user; recommendations not updated"}


async def test_1001_events_are_refused_and_nothing_is_written(
    ah: ActionHub, database: dbmod.Database
) -> None:
    events = [event(f"u{i}", "2026-01-01T00:00:00Z", "a1") for i in range(1001)]
    r = await post_events(ah, events)
    assert r.status_code == 422
    (error,) = r.json()["detail"]
    assert error["type"] == "too_long"
    assert error["loc"] == ["body", "events"]
    assert count(database, "ah_events") == 0
    r = await post_events(ah, events[:1000])
    assert r.status_code == 200
    assert count(database, "ah_events") == 1000


async def test_empty_and_missing_event_lists_are_refused(ah: ActionHub) -> None:
    r = await post_events(ah, [])
    assert r.status_code == 422
    assert r.json()["detail"][0]["type"] == "too_short"
    r = await ah.http.post("/events", json={}, headers=ah.headers())
    assert r.status_code == 422
    assert r.json()["detail"][0] == {
        "type": "missing",
        "loc": ["body", "events"],
        "msg": "Field required",
        "input": {},
    }


@pytest.mark.parametrize(
    "timestamp",
    [
        "2026-13-01T00:00:00Z",
        "2026-02-30T00:00:00Z",
        "2026-01-01T25:00:00Z",
        "yesterday",
        "",
        "2026-01-01",
        "1700000000",
        1700000000,
        None,
        "9999-12-31T23:00:00-05:00",
    ],
)
async def test_bad_timestamps_are_refused_and_nothing_is_written(
    ah: ActionHub, database: dbmod.Database, timestamp: Any
) -> None:
    events = [event("u1", "2026-01-01T00:00:00Z", "a1"), event("u2", timestamp, "a1")]
    r = await post_events(ah, events)
    assert r.status_code == 422, r.text
    (error,) = r.json()["detail"]
    assert error["loc"] == ["body", "events", 1, "event_timestamp"]
    assert count(database, "ah_events") == 0
    assert count(database, "ah_users") == 0


@pytest.mark.parametrize(
    ("field", "value", "error_type"),
    [
        ("user_id", "", "string_too_short"),
        ("user_id", "u" * 65, "string_too_long"),
        ("user_id", "tab\there", "value_error"),
        ("event_type", "", "string_too_short"),
        ("event_type", "x\x00", "value_error"),
        ("asset_id", "a" * 65, "string_too_long"),
        ("labels", ["ok", "bad\x1f"], "value_error"),
        ("labels", "not-a-list", "list_type"),
    ],
)
async def test_bad_event_fields_are_refused(
    ah: ActionHub, database: dbmod.Database, field: str, value: Any, error_type: str
) -> None:
    bad = event("u1", "2026-01-01T00:00:00Z", "a1")
    bad[field] = value
    r = await post_events(ah, [event("u0", "2026-01-01T00:00:00Z", "a1"), bad])
    assert r.status_code == 422
    (error,) = r.json()["detail"]
    assert error["type"] == error_type
    assert error["loc"][:4] == ["body", "events", 1, field]
    assert count(database, "ah_events") == 0


async def test_missing_event_fields_are_named(ah: ActionHub) -> None:
    r = await post_events(ah, [{"labels": []}])
    assert r.status_code == 422
    missing = sorted(e["loc"][-1] for e in r.json()["detail"] if e["type"] == "missing")
    assert missing == ["asset_id", "event_timestamp", "event_type", "user_id"]


async def test_bad_query_flags_are_refused(ah: ActionHub, database: dbmod.Database) -> None:
    r = await post_events(ah, sequences(), queue_updates="maybe")
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["query", "queue_updates"]
    assert count(database, "ah_events") == 0


# --- GET /users/{id}/events -----------------------------------------------------------------


async def test_history_shape_order_and_catalogue_at_answer_time(ah: ActionHub) -> None:
    assert (
        await ah.post_assets([{"asset_id": "a1", "asset_name": "One", "labels": ["x"]}])
    ).status_code == 200
    events = [
        event("u1", "2026-01-02T10:00:00+02:00", "a1", "buy", labels=["promo"]),
        event("u1", "2026-01-01T00:00:00.123", "a2"),
    ]
    assert (await post_events(ah, events)).status_code == 200
    r = await ah.http.get("/users/u1/events", headers=ah.headers())
    assert r.status_code == 200
    assert r.json() == {
        "history": [
            {
                "timestamp": "2026-01-01T00:00:00.123000Z",
                "event_type": "view",
                "asset_id": "a2",
                "asset_name": None,
                "event_labels": [],
                "asset_labels": [],
            },
            {
                "timestamp": "2026-01-02T08:00:00Z",
                "event_type": "buy",
                "asset_id": "a1",
                "asset_name": "One",
                "event_labels": ["promo"],
                "asset_labels": ["x"],
            },
        ]
    }
    await ah.post_assets([{"asset_id": "a1", "asset_name": "Renamed", "labels": ["y", "z"]}])
    await ah.post_assets([{"asset_id": "a2", "asset_name": "Two"}])
    history = (await ah.http.get("/users/u1/events", headers=ah.headers())).json()["history"]
    assert [(h["asset_name"], h["asset_labels"]) for h in history] == [
        ("Two", []),
        ("Renamed", ["y", "z"]),
    ]
    assert [h["event_labels"] for h in history] == [[], ["promo"]]


async def test_history_limit_keeps_the_latest(ah: ActionHub) -> None:
    await post_events(
        ah, [event("u1", f"2026-01-{d:02d}T00:00:00Z", f"a{d}") for d in range(1, 11)]
    )
    r = await ah.http.get("/users/u1/events", params={"limit": 3}, headers=ah.headers())
    assert [h["asset_id"] for h in r.json()["history"]] == ["a8", "a9", "a10"]
    for bad in (0, 10_001, "x"):
        r = await ah.http.get("/users/u1/events", params={"limit": bad}, headers=ah.headers())
        assert r.status_code == 422
        assert r.json()["detail"][0]["loc"] == ["query", "limit"]


async def test_unknown_users_are_404_on_every_user_route(ah: ActionHub) -> None:
    await post_events(ah, sequences())
    for method, path in [
        ("GET", "/users/nobody/events"),
        ("GET", "/users/nobody/actions"),
        ("PUT", "/users/nobody/rebase"),
    ]:
        r = await ah.http.request(method, path, headers=ah.headers())
        assert r.status_code == 404, (method, path)
        assert r.json() == {"detail": "User not found"}


async def test_users_belong_to_their_program(ah: ActionHub, database: dbmod.Database) -> None:
    from labelhub.actionhub import store

    database.run_write(store.create_program, "other")
    await post_events(ah, sequences())
    r = await ah.http.get(
        "/users/u1/events", headers=ah.headers(key=ah.make_key("admin"), program="other")
    )
    assert r.status_code == 404


async def test_percent_encoded_user_ids(ah: ActionHub) -> None:
    user = "team/ana lyst%"
    await post_events(ah, [event(user, "2026-01-01T00:00:00Z", "a1")])
    for path in ("events", "actions"):
        r = await ah.http.get(f"/users/team%2Fana%20lyst%25/{path}", headers=ah.headers())
        assert r.status_code == 200, r.text
    r = await ah.http.put("/users/team%2Fana%20lyst%25/rebase", headers=ah.headers())
    assert r.json() == {"result": f"Recommendations of user {user!r} recomputed from 1 event"}


# --- GET /users/{id}/actions ----------------------------------------------------------------


async def test_actions_shape_and_order(ah: ActionHub) -> None:
    await ah.post_assets([{"asset_id": "a3", "asset_name": "Three"}])
    await post_events(ah, sequences())
    found = await actions(ah, "u0")
    assert found, "a user with history and neighbours gets actions"
    for item in found:
        assert set(item) == {"event_type", "asset_id", "asset_name", "growth_weight", "base_weight"}
    weights = [a["growth_weight"] for a in found]
    assert weights == sorted(weights, reverse=True)
    # u0 took a1 then a2; users like u1 went on to a3: it comes first, untaken (base 0).
    assert found[0] == {
        "event_type": "view",
        "asset_id": "a3",
        "asset_name": "Three",
        "growth_weight": pytest.approx(found[0]["growth_weight"]),
        "base_weight": 0.0,
    }
    taken = {a["asset_id"]: a["base_weight"] for a in found if a["base_weight"] > 0}
    assert set(taken) == {"a1", "a2"}
    assert taken["a2"] == pytest.approx(1.0)  # the latest action: no decay
    assert taken["a1"] == pytest.approx(2 ** (-1 / 30))  # one day older, half-life 30 days


async def test_allow_repeats_false_never_returns_taken_actions(ah: ActionHub) -> None:
    await post_events(ah, sequences())
    assert {a["asset_id"] for a in await actions(ah, "u0", allow_repeats="false")} == {"a3"}
    # Taken but not yet processed counts as taken too.
    await post_events(ah, [event("u0", "2026-01-05T00:00:00Z", "a3")], process_user_actions="false")
    assert await actions(ah, "u0", allow_repeats="false") == []


async def test_limit_bounds(ah: ActionHub) -> None:
    await post_events(ah, sequences())
    assert len(await actions(ah, "u1", limit=1)) == 1
    for bad in (0, 101, "ten"):
        r = await ah.http.get("/users/u1/actions", params={"limit": bad}, headers=ah.headers())
        assert r.status_code == 422
        assert r.json()["detail"][0]["loc"] == ["query", "limit"]
    r = await ah.http.get(
        "/users/u1/actions", params={"allow_repeats": "perhaps"}, headers=ah.headers()
    )
    assert r.status_code == 422


async def test_label_weights_steer_growth_at_once(ah: ActionHub) -> None:
    await ah.post_assets([{"asset_id": "a3", "labels": ["promo"]}, {"asset_id": "a2"}])
    await post_events(ah, sequences())
    before = {a["asset_id"]: a["growth_weight"] for a in await actions(ah, "u0")}
    assert (await ah.put_labels([{"label": "promo", "weight": 1}])).status_code == 200
    after = {a["asset_id"]: a["growth_weight"] for a in await actions(ah, "u0")}
    assert after["a3"] == pytest.approx(2 * before["a3"])  # factor 1 + 1
    assert after["a1"] == pytest.approx(before["a1"])
    await ah.put_labels([{"label": "promo", "weight": -3}])
    demoted = {a["asset_id"]: a["growth_weight"] for a in await actions(ah, "u0")}
    assert demoted["a3"] == pytest.approx(before["a3"] / 4)  # factor 1 / (1 + 3)


async def test_stale_pools_are_queued_when_read(ah: ActionHub, database: dbmod.Database) -> None:
    await post_events(ah, sequences())
    assert count(database, "ah_user_queue") == 0

    async def read_queues_a_refresh() -> bool:
        await actions(ah, "u0")
        for _ in range(100):  # the enqueue is a background write
            if count(database, "ah_user_queue"):
                break
            await database.write(lambda conn: None)
        queued = table_rows(database, "SELECT user_id FROM ah_user_queue") == [("u0",)]
        await ah.http.put("/users/u0/rebase", headers=ah.headers())  # fresh again, dequeued
        return queued

    await ah.put_labels([{"label": "promo", "weight": 1}])
    assert await read_queues_a_refresh()
    # A second change right after the first (covered by the first's mark, which is dated ahead)
    # still makes the pool rebuilt before it stale.
    await ah.put_labels([{"label": "promo", "weight": 2}])
    assert await read_queues_a_refresh()
    await ah.post_assets([{"asset_id": "a3", "labels": ["promo"]}])
    assert await read_queues_a_refresh()


# --- processing modes, rebase, the queue ----------------------------------------------------


async def test_unprocessed_events_wait_for_rebase(ah: ActionHub, database: dbmod.Database) -> None:
    await post_events(ah, sequences(), process_user_actions="false")
    assert count(database, "ah_actions") == 0  # nothing folded: no statistics yet
    assert await actions(ah, "u1") == []
    await ah.http.put("/users/u0/rebase", headers=ah.headers())
    # u1 is still unprocessed: the popularity fallback (of what was folded), base weights 0.
    fallback = await actions(ah, "u1")
    assert {a["asset_id"] for a in fallback} == {"a1", "a2"}
    assert all(a["base_weight"] == 0 for a in fallback)
    r = await ah.http.put("/users/u1/rebase", headers=ah.headers())
    assert r.status_code == 200
    assert r.json() == {"result": "Recommendations of user 'u1' recomputed from 3 events"}
    assert all(a["base_weight"] > 0 for a in await actions(ah, "u1"))
    assert table_rows(database, "SELECT pending FROM ah_users WHERE user_id = 'u1'") == [(0,)]
    assert table_rows(database, "SELECT pending FROM ah_users WHERE user_id = 'u2'") == [(2,)]


async def test_queued_updates_survive_the_process_that_queued_them(
    ah: ActionHub, settings: Settings, database: dbmod.Database
) -> None:
    r = await post_events(ah, sequences(), queue_updates="true")
    assert r.status_code == 200
    assert count(database, "ah_user_queue") == 6
    assert table_rows(database, "SELECT count(*) FROM ah_users WHERE pool IS NULL") == [(6,)]
    # Another process (another app on the same database) drains the queue.
    other_db = dbmod.Database(settings)
    try:
        worker = create_app(settings, other_db).state.worker
        assert await worker.round() == 6
        assert await worker.round() == 0
    finally:
        other_db.close()
    assert count(database, "ah_user_queue") == 0
    assert table_rows(database, "SELECT count(*) FROM ah_users WHERE pool IS NULL") == [(0,)]
    assert {a["asset_id"] for a in await actions(ah, "u0", allow_repeats="false")} == {"a3"}


async def test_the_worker_runs_in_the_served_app(settings: Settings, db_url: str) -> None:
    """With the lifespan running (as under ``labelhub serve``), queued users get processed."""
    from labelhub.actionhub import store
    from labelhub.core import keys

    database = dbmod.Database(settings)
    try:
        database.run_write(store.create_program, "shop")
        secret = database.run_write(
            keys.create_key, "w", [keys.parse_grant("program:shop", "write")]
        ).secret
        app = create_app(settings.model_copy(update={"worker_poll_seconds": 0.05}), database)
        headers = {"actionhub-key": secret, "program-id": "shop"}
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
                r = await http.post(
                    "/events",
                    params={"queue_updates": "true"},
                    json={"events": sequences()},
                    headers=headers,
                )
                assert r.status_code == 200
                for _ in range(200):
                    if app.state.worker.processed == 6:
                        break
                    await asyncio.sleep(0.05)
                assert database.run_read(recommender.queue_depth) == 0
                metrics = (await http.get("/metrics")).text
                assert "labelhub_recommendation_worker_users 6.0" in metrics
    finally:
        database.close()


async def test_deleting_the_program_removes_its_events(
    ah: ActionHub, database: dbmod.Database
) -> None:
    await post_events(ah, sequences(), queue_updates="true")
    admin = ah.make_key("admin")
    r = await ah.http.delete("/admin/programs/shop", headers={"x-api-key": admin})
    assert r.status_code == 200
    for table in ("ah_events", "ah_users", "ah_user_queue", "ah_actions", "ah_cooccurrence"):
        assert count(database, table) == 0, table


async def test_half_life_is_per_program(ah: ActionHub) -> None:
    admin = {"x-api-key": ah.make_key("admin")}
    r = await ah.http.post(
        "/admin/programs", json={"program_id": "fast", "half_life_days": 1}, headers=admin
    )
    assert r.status_code == 201
    h = ah.headers(key=admin["x-api-key"], program="fast")
    events = [event("u", "2026-01-01T00:00:00Z", "a1"), event("u", "2026-01-03T00:00:00Z", "a2")]
    await ah.http.post("/events", json={"events": events}, headers=h)
    r = await ah.http.get("/users/u/actions", headers=h)
    base = {a["asset_id"]: a["base_weight"] for a in r.json()["actions"]}
    assert base == {"a2": pytest.approx(1.0), "a1": pytest.approx(0.25)}  # two half-lives
    for bad in (0, -1, 40_000, "x"):
        r = await ah.http.post(
            "/admin/programs", json={"program_id": "bad", "half_life_days": bad}, headers=admin
        )
        assert r.status_code == 422
