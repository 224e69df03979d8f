"""HAR metadata routes under ``/har/api/v1``: registries, artifacts, labels and listings.

Refs arrive canonical (see ``labelhub.har.paths``): one percent-quoted segment each.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from sqlalchemy import Connection

from labelhub.core import etag, fast
from labelhub.core.access import READS_AHEAD, X_API_KEY
from labelhub.core.errors import Invalid, LabelhubError, PreconditionFailed, Unsupported
from labelhub.core.pagination import page_count
from labelhub.core.sql import Read
from labelhub.har import schemas, store
from labelhub.har.deps import (
    RegistryAccess,
    RegistryEdit,
    RegistryView,
    SpaceAccess,
    SpaceView,
    artifact_name,
    space_path,
    unquote_ref,
)

HAR_PREFIX = "/har/api/v1"

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": schemas.Error, "description": description}
    for status, description in {
        400: "Bad request: body, parameter or ref",
        401: "Missing, unknown or revoked key",
        403: "The key has no grant on the space",
        404: "Not found",
        413: "Request body over 5 MiB",
        500: "Internal error",
        503: "The database cannot be reached",
    }.items()
}

router = APIRouter(prefix=HAR_PREFIX, tags=["HAR"], responses=ERRORS)

ArtifactPath = Annotated[
    str, Path(description="The artifact name; one with / as %2F or plain with a trailing /+")
]
ArtifactTypeQuery = Annotated[
    schemas.ArtifactType | None, Query(description="HUGGINGFACE registries only")
]


def _ms(value: int) -> str:
    return str(value)


def _registry_out(request: Request, row: store.RegistryRow) -> schemas.Registry:
    return schemas.Registry(
        identifier=row.identifier,
        packageType=row.package_type,
        description=row.description,
        labels=row.labels,
        config=schemas.RegistryConfig(type=row.registry_type),
        url=f"{str(request.base_url).rstrip('/')}/pkg/{row.account}/{row.identifier}",
        createdAt=_ms(row.created_at),
        modifiedAt=_ms(row.modified_at),
        uuid=row.uuid,
    )


def _summary(registry: store.RegistryRow, artifact: store.ArtifactRow) -> schemas.ArtifactSummary:
    return schemas.ArtifactSummary(
        imageName=artifact.name,
        packageType=registry.package_type,
        artifactType=artifact.artifact_type or None,
        labels=artifact.labels,
        downloadsCount=artifact.downloads_count,
        createdAt=_ms(artifact.created_at),
        modifiedAt=_ms(artifact.modified_at),
        uuid=artifact.uuid,
        registryUUID=registry.uuid,
    )


# --- registries -----------------------------------------------------------------------------


@router.post("/registry", status_code=201, summary="Create a registry")
async def create_registry(
    request: Request,
    body: schemas.RegistryIn,
    space_ref: Annotated[
        str | None, Query(description="The space; the body's parentRef wins")
    ] = None,
) -> schemas.Success[schemas.Registry]:
    ref = body.parentRef or space_ref
    if not ref:
        raise Invalid("Give the space as the space_ref query parameter or the body's parentRef")
    space = space_path(ref)
    if body.config.type == "UPSTREAM":
        raise Unsupported("UPSTREAM registries are not supported; use config.type VIRTUAL")
    access = SpaceAccess(request.app.state.db, await X_API_KEY(request), space, edit=True)
    row = await access.write(
        lambda conn, space: store.create_registry(
            conn,
            space,
            body.identifier,
            body.packageType,
            body.description or "",
            body.labels or [],
        )
    )
    return schemas.Success(data=_registry_out(request, row))


@router.get("/registry/{registry_ref}", summary="Read a registry")
async def get_registry(request: Request, access: RegistryView) -> schemas.Success[schemas.Registry]:
    row = await access.read(lambda conn, registry: registry, quick=True)
    return schemas.Success(data=_registry_out(request, row))


@router.put("/registry/{registry_ref}", summary="Replace a registry's description and labels")
async def update_registry(
    request: Request, body: schemas.RegistryUpdate, access: RegistryEdit
) -> schemas.Success[schemas.Registry]:
    def work(conn: Connection, registry: store.RegistryRow) -> store.RegistryRow:
        if body.identifier is not None and body.identifier != registry.identifier:
            raise Invalid("A registry's identifier cannot be changed")
        if body.packageType is not None and body.packageType != registry.package_type:
            raise Invalid("A registry's packageType cannot be changed")
        if body.config is not None and body.config.type != registry.registry_type:
            raise Invalid("A registry's config.type cannot be changed")
        return store.update_registry(conn, registry, body.description, body.labels)

    return schemas.Success(data=_registry_out(request, await access.write(work)))


@router.delete("/registry/{registry_ref}", summary="Delete a registry and its artifacts")
async def delete_registry(access: RegistryEdit) -> schemas.StatusOnly:
    await access.write(store.delete_registry)
    return schemas.StatusOnly()


# --- artifacts ------------------------------------------------------------------------------


@router.post(
    "/registry/{registry_ref}/artifacts",
    status_code=201,
    summary="Register an artifact by its metadata (labelhub extension)",
    responses={409: {"model": schemas.Error, "description": "The artifact exists"}},
    response_model_exclude_none=True,
)
async def register_artifact(
    body: schemas.ArtifactIn, access: RegistryEdit
) -> schemas.Success[schemas.ArtifactSummary]:
    def work(conn: Connection, registry: store.RegistryRow) -> schemas.ArtifactSummary:
        artifact = store.register_artifact(
            conn, registry, body.name, body.artifactType, body.version, body.labels or []
        )
        return _summary(registry, artifact)

    return schemas.Success(data=await access.write(work))


SUMMARY_ETAG = etag.documented("the artifact summary, for If-Match on the label update")
IfMatch = Annotated[
    str | None,
    Header(
        alias="if-match",
        description="labelhub extension: update only if the summary's ETag is still one of these "
        "(or * for any); otherwise 412 and nothing changes",
    ),
]


def _summary_json(summary: schemas.ArtifactSummary) -> bytes:
    """The summary as answers carry it (fields that are None left out)."""
    return summary.model_dump_json(exclude_none=True).encode()


def summary_etag(summary: schemas.ArtifactSummary) -> str:
    return etag.of_json(_summary_json(summary))


@router.get(
    "/registry/{registry_ref}/artifact/{artifact}/summary",
    summary="Read an artifact's summary",
    response_model=schemas.Success[schemas.ArtifactSummary],
    response_model_exclude_none=True,
    responses=SUMMARY_ETAG,
)
async def artifact_summary(
    response: Response,
    artifact: ArtifactPath,
    access: RegistryView,
    artifact_type: ArtifactTypeQuery = None,
    if_none_match: etag.IfNoneMatch = None,
) -> schemas.Success[schemas.ArtifactSummary] | Response:
    name = artifact_name(artifact)

    def work(conn: Connection, registry: store.RegistryRow) -> schemas.ArtifactSummary:
        return _summary(registry, store.find_artifact(conn, registry, name, artifact_type))

    summary = await access.read(work, quick=True)
    not_modified = etag.not_modified(response, summary_etag(summary), if_none_match)
    return not_modified or schemas.Success(data=summary)


@router.put(
    "/registry/{registry_ref}/artifact/{artifact}/labels",
    summary="Update Artifact Labels",
    description="Replaces the artifact's whole label set (and modifiedAt) in one transaction. "
    "labelhub extension: with If-Match, only while the summary's ETag is still the one given.",
    response_model_exclude_none=True,
    responses={
        200: SUMMARY_ETAG[200],
        412: {"model": schemas.Error, "description": "If-Match: the artifact has changed"},
    },
)
async def update_artifact_labels(
    response: Response,
    artifact: ArtifactPath,
    body: schemas.LabelsBody,
    access: RegistryEdit,
    artifact_type: ArtifactTypeQuery = None,
    if_match: IfMatch = None,
) -> schemas.Success[schemas.ArtifactSummary]:
    update = LabelUpdate(artifact_name(artifact), artifact_type, body.labels, if_match)
    summary = await access.write_shared(update_label_sets, update)
    response.headers["ETag"] = summary_etag(summary)
    return schemas.Success(data=summary)


@dataclass(frozen=True)
class LabelUpdate:
    name: str
    artifact_type: str | None
    labels: list[str]
    if_match: str | None


def update_label_sets(
    conn: Connection, requests: list[tuple[store.RegistryRow, LabelUpdate]]
) -> list[schemas.ArtifactSummary | LabelhubError]:
    """The label updates of a write batch, shared (``store.replace_label_sets``): summaries."""

    def unchanged(
        registry: store.RegistryRow, if_match: str
    ) -> Callable[[store.ArtifactRow], None]:
        def check(current: store.ArtifactRow) -> None:
            # On the current row, inside the write transaction (which holds the write lock):
            # nobody can change the artifact between this comparison and the update.
            if not etag.if_match(if_match, summary_etag(_summary(registry, current))):
                raise PreconditionFailed(
                    "The artifact has changed since that ETag was read; read it again"
                )

        return check

    replacements = [
        (
            registry,
            store.Replacement(
                update.name,
                update.artifact_type,
                update.labels,
                None if update.if_match is None else unchanged(registry, update.if_match),
            ),
        )
        for registry, update in requests
    ]
    return [
        result if isinstance(result, LabelhubError) else _summary(registry, result)
        for (registry, _), result in zip(
            requests, store.replace_label_sets(conn, replacements), strict=True
        )
    ]


def _named_artifact_reads(
    conn: Connection, requests: list[tuple[RegistryAccess, LabelUpdate]]
) -> list[Read]:
    return store.named_artifact_reads(
        conn, [(g.space_access.space, g.identifier, update.name) for g, update in requests]
    )


setattr(update_label_sets, READS_AHEAD, _named_artifact_reads)

ARTIFACT_LABELS = re.compile(r"^/har/api/v1/registry/([^/]+)/artifact/([^/]+)/labels$")


def _artifact_labels_path(path: str) -> dict[str, str] | None:
    match = ARTIFACT_LABELS.match(path)
    return None if match is None else {"registry_ref": match[1], "artifact": match[2]}


async def _fast_update_artifact_labels(request: fast.FastRequest) -> fast.Answer | None:
    if request.scope["query_string"] or b"if-match" in request.headers:
        return None  # FastAPI parses artifact_type and If-Match
    db = request.scope["app"].state.db
    secret = request.headers[b"x-api-key"] or None
    access = RegistryAccess(db, secret, unquote_ref(request.params["registry_ref"]), edit=True)
    update = LabelUpdate(artifact_name(request.params["artifact"]), None, request.body.labels, None)
    summary = await access.write_shared(update_label_sets, update)
    # One rendering serves the ETag and the body ({"status":"SUCCESS","data":<summary>}, the
    # bytes FastAPI's route sends: tests/test_fast_routes.py compares them).
    data = _summary_json(summary)
    return 200, _SUCCESS_OPEN + data + b"}", [(b"etag", etag.of_json(data).encode())]


_SUCCESS_OPEN = b'{"status":"SUCCESS","data":'


FAST_ROUTES = [
    fast.FastRoute(
        "PUT",
        _artifact_labels_path,
        frozenset({b"x-api-key", b"if-match"}),
        frozenset({b"x-api-key"}),
        schemas.LabelsBody,
        _fast_update_artifact_labels,
        fast.route_of(
            router, "PUT", HAR_PREFIX + "/registry/{registry_ref}/artifact/{artifact}/labels"
        ),
    ),
]


@router.delete("/registry/{registry_ref}/artifact/{artifact}", summary="Delete an artifact")
async def delete_artifact(
    artifact: ArtifactPath, access: RegistryEdit, artifact_type: ArtifactTypeQuery = None
) -> schemas.StatusOnly:
    name = artifact_name(artifact)
    await access.write(
        lambda conn, registry: store.delete_artifact(conn, registry, name, artifact_type)
    )
    return schemas.StatusOnly()


# --- listings -------------------------------------------------------------------------------

Page0 = Annotated[int, Query(ge=0, description="0-based page index")]
Size = Annotated[int, Query(ge=1, le=100, description="Items per page")]
SearchTerm = Annotated[
    str | None, Query(description="Case-insensitive substring; % and _ are literal")
]
Labels = Annotated[
    list[str] | None, Query(description="Repeatable: an artifact must carry every label given")
]
ArtifactSort = Annotated[Literal["name", "lastModified", "downloadsCount"], Query()]
SortOrder = Annotated[Literal["ASC", "DESC"], Query()]


def _paged(total: int, page: int, size: int) -> dict[str, int]:
    return {
        "itemCount": total,
        "pageCount": page_count(total, size),
        "pageIndex": page,
        "pageSize": size,
    }


def _artifact_entries(items: list[store.ArtifactListItem]) -> list[schemas.ArtifactListEntry]:
    return [
        schemas.ArtifactListEntry(
            name=i.artifact.name,
            registryIdentifier=i.registry.identifier,
            packageType=i.registry.package_type,
            artifactType=i.artifact.artifact_type or None,
            labels=i.artifact.labels,
            downloadsCount=i.artifact.downloads_count,
            lastModified=_ms(i.artifact.modified_at),
            latestVersion=i.artifact.latest_version,
            uuid=i.artifact.uuid,
            registryUUID=i.registry.uuid,
        )
        for i in items
    ]


async def _artifact_query(
    label: Labels = None,
    search_term: SearchTerm = None,
    artifact_type: ArtifactTypeQuery = None,
    page: Page0 = 0,
    size: Size = 20,
    sort_field: ArtifactSort = "lastModified",
    sort_order: SortOrder = "DESC",
) -> store.ArtifactQuery:
    return store.ArtifactQuery(
        label or [], search_term, artifact_type, page, size, sort_field, sort_order
    )


ArtifactFilters = Annotated[store.ArtifactQuery, Depends(_artifact_query)]


def _artifact_list(
    found: tuple[list[store.ArtifactListItem], int], q: store.ArtifactQuery
) -> schemas.Success[schemas.ArtifactList]:
    items, total = found
    return schemas.Success(
        data=schemas.ArtifactList(
            artifacts=_artifact_entries(items), **_paged(total, q.page, q.size)
        )
    )


@router.get(
    "/registry/{registry_ref}/artifacts",
    summary="List a registry's artifacts",
)
async def list_registry_artifacts(
    access: RegistryView, q: ArtifactFilters
) -> schemas.Success[schemas.ArtifactList]:
    def work(
        conn: Connection, registry: store.RegistryRow
    ) -> tuple[list[store.ArtifactListItem], int]:
        store.check_artifact_type(registry, q.artifact_type)
        return store.list_artifacts(conn, [registry], q)

    return _artifact_list(await access.read(work), q)


@router.get(
    "/registry/{registry_ref}/artifact/labels",
    summary="List the distinct labels of a registry's artifacts",
)
async def list_registry_labels(
    access: RegistryView, search_term: SearchTerm = None, page: Page0 = 0, size: Size = 20
) -> schemas.Success[schemas.LabelList]:
    labels, total = await access.read(store.list_registry_labels, search_term, page, size)
    return schemas.Success(data=schemas.LabelList(labels=labels, **_paged(total, page, size)))


@router.get(
    "/spaces/{space_ref}/artifacts",
    summary="List the artifacts of a space and the spaces below it",
)
async def list_space_artifacts(
    access: SpaceView,
    q: ArtifactFilters,
    reg_identifier: Annotated[list[str] | None, Query(description="Repeatable")] = None,
    package_type: Annotated[
        list[schemas.PackageType] | None, Query(description="Repeatable")
    ] = None,
) -> schemas.Success[schemas.ArtifactList]:
    def work(conn: Connection, space: str) -> tuple[list[store.ArtifactListItem], int]:
        registries = store.registries_under(
            conn, space, identifiers=reg_identifier, package_types=list(package_type or [])
        )
        return store.list_artifacts(conn, registries, q)

    return _artifact_list(await access.read(work), q)


@router.get("/spaces/{space_ref}/registries", summary="List the registries of a space and below")
async def list_space_registries(
    request: Request,
    access: SpaceView,
    package_type: Annotated[schemas.PackageType | None, Query()] = None,
    search_term: SearchTerm = None,
    page: Page0 = 0,
    size: Size = 20,
    sort_field: Annotated[Literal["identifier", "lastModified"], Query()] = "lastModified",
    sort_order: SortOrder = "DESC",
) -> schemas.Success[schemas.RegistryList]:
    items, total = await access.read(
        lambda conn, space: store.list_registries(
            conn,
            space,
            package_type=package_type,
            search=search_term,
            page=page,
            size=size,
            sort_field=sort_field,
            sort_order=sort_order,
        )
    )
    entries = []
    for item in items:
        full = _registry_out(request, item.registry)
        entries.append(
            schemas.RegistryListEntry(
                identifier=full.identifier,
                packageType=full.packageType,
                type=full.config.type,
                description=full.description,
                labels=full.labels,
                artifactsCount=item.artifacts,
                downloadsCount=item.downloads,
                lastModified=full.modifiedAt,
                url=full.url,
                uuid=full.uuid,
            )
        )
    return schemas.Success(
        data=schemas.RegistryList(registries=entries, **_paged(total, page, size))
    )
