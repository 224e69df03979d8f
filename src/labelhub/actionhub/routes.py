"""ActionHub routes at the server root: labels, assets, events and recommended actions."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel

from labelhub.actionhub import schemas, store
from labelhub.actionhub.deps import (
    FAST_HEADERS,
    FAST_REQUIRED,
    ProgramAccess,
    ProgramRead,
    ProgramWrite,
    fast_program_access,
)
from labelhub.core import etag, fast
from labelhub.core.models import to_datetime, to_epoch_ms

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {
        "model": schemas.Detail,
        "description": "Unsupported api-version, or a body that does not parse "
        "(not UTF-8, nested too deep)",
    },
    403: {"model": schemas.Detail, "description": "Missing, unknown or revoked key, or no grant"},
    404: {"model": schemas.Detail, "description": "Program not found"},
    413: {"model": schemas.Detail, "description": "Request body over 5 MiB"},
    503: {"model": schemas.Detail, "description": "The database cannot be reached"},
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": schemas.Detail, "description": "Program, label or asset not found"}
}

router = APIRouter(tags=["ActionHub"], responses=ERRORS)

Search = Annotated[
    str | None,
    Query(description="Case-insensitive substring (Unicode case folding); % and _ are literal."),
]
Page = Annotated[int, Query(ge=1, description="1-based page number")]
Size = Annotated[int, Query(ge=1, le=100, description="Items per page")]
LabelPath = Annotated[
    schemas.LabelName, Path(min_length=1, max_length=64, description="Percent-encoded label")
]
AssetIdPath = Annotated[
    schemas.AssetId, Path(min_length=1, max_length=64, description="Percent-encoded id")
]


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _counted(upserted: store.Upserted, noun: str) -> str:
    return f"{_plural(upserted.created, noun)} created, {_plural(upserted.updated, noun)} updated"


async def _put_labels(body: schemas.LabelList, access: ProgramAccess) -> str:
    # Shared with the neighbouring PUT /labels of the write batch: a few statements for all.
    upserted = await access.write_shared(
        store.upsert_label_sets, [(item.label, item.weight) for item in body.labels]
    )
    return _counted(upserted, "label")


@router.put("/labels", summary="Upsert the program's labels")
async def put_labels(body: schemas.LabelList, access: ProgramWrite) -> schemas.SuccessMessage:
    """Adds labels the program lacks and re-weights those it has; labels not named stay as
    they are. Items apply in order (a repeated label's last weight wins), in one transaction."""
    return schemas.SuccessMessage(result=await _put_labels(body, access))


async def _fast_put_labels(request: fast.FastRequest) -> fast.Answer | None:
    access = fast_program_access(request, write=True)
    if access is None:
        return None
    return 200, {"result": await _put_labels(request.body, access)}, []


@router.get(
    "/labels",
    summary="List the program's labels",
    response_model=schemas.LabelPage,
    responses=etag.documented("the page"),
)
async def get_labels(
    response: Response,
    access: ProgramRead,
    search: Search = None,
    page: Page = 1,
    size: Size = 50,
    if_none_match: etag.IfNoneMatch = None,
) -> schemas.LabelPage | Response:
    answer = await _label_page(access, search, page, size)
    return etag.not_modified(response, etag.of(answer), if_none_match) or answer


async def _label_page(
    access: ProgramAccess, search: str | None, page: int, size: int
) -> schemas.LabelPage:
    items, total = await access.read(store.list_labels, search, page, size, quick=not search)
    # Built from what the database holds, not validated again (FastAPI's route validates the
    # answer against LabelPage; tests/test_fast_routes.py compares the bytes of both ways).
    label = schemas.Label.model_construct
    return schemas.LabelPage.model_construct(
        items=[label(label=name, weight=float(weight)) for name, weight in items],
        total=total,
        page=page,
        size=size,
    )


class _LabelQuery(BaseModel):
    """``GET /labels``'s query parameters, as the FastAPI route declares them."""

    search: Search = None
    page: Page = 1
    size: Size = 50


async def _fast_get_labels(request: fast.FastRequest) -> fast.Answer | None:
    if b"if-none-match" in request.headers:
        return None  # FastAPI answers conditional reads
    access = fast_program_access(request, write=False)
    if access is None:
        return None
    query: _LabelQuery = request.query
    answer = await _label_page(access, query.search, query.page, query.size)
    data = answer.model_dump_json().encode()  # the bytes FastAPI's route sends, and their tag
    return 200, data, [(b"etag", etag.of_json(data).encode())]


FAST_ROUTES = [
    fast.FastRoute(
        "PUT",
        fast.exact("/labels"),
        FAST_HEADERS,
        FAST_REQUIRED,
        schemas.LabelList,
        _fast_put_labels,
        fast.route_of(router, "PUT", "/labels"),
    ),
    fast.FastRoute(
        "GET",
        fast.exact("/labels"),
        FAST_HEADERS | {b"if-none-match"},
        FAST_REQUIRED,
        None,
        _fast_get_labels,
        fast.route_of(router, "GET", "/labels"),
        _LabelQuery,
    ),
]


@router.delete("/labels/{label:path}", summary="Remove one label", responses=NOT_FOUND)
async def delete_label(label: LabelPath, access: ProgramWrite) -> schemas.SuccessMessage:
    await access.write(store.delete_label, label)
    return schemas.SuccessMessage(result=f"Label {label!r} deleted")


@router.post("/assets", summary="Upsert assets")
async def post_assets(body: schemas.AssetList, access: ProgramWrite) -> schemas.SuccessMessage:
    """Creates unknown assets; on known ones the fields sent replace the stored ones and fields
    left out keep their value. Items apply in order, in one transaction."""
    patches = [
        store.AssetPatch(
            item.asset_id,
            (item.asset_name,) if "asset_name" in item.model_fields_set else None,
            tuple(dict.fromkeys(item.labels)) if "labels" in item.model_fields_set else None,
        )
        for item in body.assets
    ]
    upserted = await access.write(store.upsert_assets, patches)
    return schemas.SuccessMessage(result=_counted(upserted, "asset"))


def _asset_out(row: store.AssetRow) -> schemas.AssetOut:
    return schemas.AssetOut(asset_id=row.asset_id, asset_name=row.asset_name, labels=row.labels)


@router.get("/assets", summary="List the program's assets")
async def get_assets(
    access: ProgramRead, search: Search = None, page: Page = 1, size: Size = 50
) -> schemas.AssetPage:
    rows, total = await access.read(store.list_assets, search, page, size, quick=not search)
    return schemas.AssetPage(items=[_asset_out(r) for r in rows], total=total, page=page, size=size)


@router.get("/assets/{asset_id:path}", summary="Read one asset", responses=NOT_FOUND)
async def get_asset(asset_id: AssetIdPath, access: ProgramRead) -> schemas.AssetOut:
    return _asset_out(await access.read(store.get_asset, asset_id, quick=True))


@router.delete("/assets/{asset_id:path}", summary="Remove one asset", responses=NOT_FOUND)
async def delete_asset(asset_id: AssetIdPath, access: ProgramWrite) -> schemas.SuccessMessage:
    await access.write(store.delete_asset, asset_id)
    return schemas.SuccessMessage(result=f"Asset {asset_id!r} deleted")


# --- events and recommendations -------------------------------------------------------------

USER_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": schemas.Detail, "description": "Program or user not found"}
}
UserPath = Annotated[
    schemas.UserId,
    Path(min_length=1, max_length=64, description="Percent-encoded user id"),
]


@router.post("/events", summary="Record user events")
async def post_events(
    request: Request,
    body: schemas.EventList,
    access: ProgramWrite,
    queue_updates: Annotated[
        bool,
        Query(description="Refresh the users' recommendations in the background, not now"),
    ] = False,
    process_user_actions: Annotated[
        bool, Query(description="Refresh the recommendations of the events' users")
    ] = True,
) -> schemas.SuccessMessage:
    """Appends 1-1,000 events in one transaction. With ``process_user_actions`` the events' users
    get fresh recommendations: before the answer (``queue_updates=false``) or from the background
    worker (``queue_updates=true``; the queue is durable). Without it the events are stored and
    count from the user's next processing (a later ``POST /events`` that processes, or a rebase)."""
    events = [
        store.EventIn(
            e.user_id, to_epoch_ms(e.event_timestamp), e.event_type, e.asset_id, list(e.labels)
        )
        for e in body.events
    ]
    recorded = await access.write(
        store.record_events,
        events,
        process_user_actions,
        queue_updates,
    )
    users = _plural(len(recorded.users), "user")
    if recorded.queued:
        request.app.state.worker.poke()
        outcome = "recommendations queued for update"
    elif process_user_actions:
        outcome = "recommendations updated"
    else:
        outcome = "recommendations not updated"
    return schemas.SuccessMessage(
        result=f"{_plural(recorded.events, 'event')} recorded for {users}; {outcome}"
    )


@router.get("/users/{user_id:path}/events", summary="A user's events", responses=USER_NOT_FOUND)
async def get_user_events(
    user_id: UserPath,
    access: ProgramRead,
    limit: Annotated[
        int, Query(ge=1, le=10_000, description="Most recent events returned (extension)")
    ] = 1_000,
) -> schemas.History:
    """The user's most recent ``limit`` events, oldest first; asset names and labels are the
    catalogue's at answer time."""
    rows = await access.read(store.user_history, user_id, limit)
    return schemas.History(
        history=[
            schemas.HistoryItem(
                timestamp=to_datetime(r.event_ts),
                event_type=r.event_type,
                asset_id=r.asset_id,
                asset_name=r.asset_name,
                event_labels=r.event_labels,
                asset_labels=r.asset_labels,
            )
            for r in rows
        ]
    )


@router.get(
    "/users/{user_id:path}/actions",
    summary="The user's next best actions",
    responses=USER_NOT_FOUND,
)
async def get_user_actions(
    request: Request,
    user_id: UserPath,
    access: ProgramRead,
    limit: Annotated[int, Query(ge=1, le=100, description="Actions returned")] = 10,
    allow_repeats: Annotated[
        bool, Query(description="Include actions the user has already taken")
    ] = True,
) -> schemas.Actions:
    """Actions (event type, asset) by ``growth_weight``, highest first. See
    docs/recommendations.md for the formulas."""
    pk, found = await access.read(store.recommend, user_id, limit, allow_repeats)
    if found.stale:  # the catalogue changed since the pool was computed: refresh it soon
        request.app.state.db.writer.submit_nowait(store.enqueue_users, (pk, [user_id]))
        request.app.state.worker.poke()
    return schemas.Actions(
        actions=[
            schemas.RecommendedAction(
                event_type=a.event_type,
                asset_id=a.asset_id,
                asset_name=a.asset_name,
                growth_weight=a.growth_weight,
                base_weight=a.base_weight,
            )
            for a in found.actions
        ]
    )


@router.put(
    "/users/{user_id:path}/rebase",
    summary="Recompute the user's recommendations now",
    responses=USER_NOT_FOUND,
)
async def rebase_user(user_id: UserPath, access: ProgramWrite) -> schemas.SuccessMessage:
    events = await access.write(store.rebase_user, user_id)
    return schemas.SuccessMessage(
        result=f"Recommendations of user {user_id!r} recomputed from {_plural(events, 'event')}"
    )
