"""HAR metadata routes under ``/har/api/v1``: registries, artifact registration, summary, labels.

Refs arrive canonical (see ``labelhub.har.paths``): one percent-quoted segment each.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import unquote

from fastapi import APIRouter, Path, Query, Request
from sqlalchemy import Connection

from labelhub.core.access import X_API_KEY
from labelhub.core.errors import Invalid, Unsupported
from labelhub.har import schemas, store
from labelhub.har.deps import RegistryEdit, RegistryView, SpaceAccess, space_path

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
    row = await access.read(lambda conn, registry: registry)
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


@router.get(
    "/registry/{registry_ref}/artifact/{artifact}/summary",
    summary="Read an artifact's summary",
    response_model_exclude_none=True,
)
async def artifact_summary(
    artifact: ArtifactPath, access: RegistryView, artifact_type: ArtifactTypeQuery = None
) -> schemas.Success[schemas.ArtifactSummary]:
    name = unquote(artifact)

    def work(conn: Connection, registry: store.RegistryRow) -> schemas.ArtifactSummary:
        return _summary(registry, store.find_artifact(conn, registry, name, artifact_type))

    return schemas.Success(data=await access.read(work))


@router.put(
    "/registry/{registry_ref}/artifact/{artifact}/labels",
    summary="Update Artifact Labels",
    description="Replaces the artifact's whole label set (and modifiedAt) in one transaction.",
    response_model_exclude_none=True,
)
async def update_artifact_labels(
    artifact: ArtifactPath,
    body: schemas.LabelsBody,
    access: RegistryEdit,
    artifact_type: ArtifactTypeQuery = None,
) -> schemas.Success[schemas.ArtifactSummary]:
    name = unquote(artifact)

    def work(conn: Connection, registry: store.RegistryRow) -> schemas.ArtifactSummary:
        updated = store.replace_labels(conn, registry, name, artifact_type, body.labels)
        return _summary(registry, updated)

    return schemas.Success(data=await access.write(work))


@router.delete("/registry/{registry_ref}/artifact/{artifact}", summary="Delete an artifact")
async def delete_artifact(
    artifact: ArtifactPath, access: RegistryEdit, artifact_type: ArtifactTypeQuery = None
) -> schemas.StatusOnly:
    name = unquote(artifact)
    await access.write(
        lambda conn, registry: store.delete_artifact(conn, registry, name, artifact_type)
    )
    return schemas.StatusOnly()
