"""The administration API under ``/admin``: programs and API keys (admin key, ``x-api-key``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from pydantic import AfterValidator, BaseModel, Field, model_validator
from sqlalchemy import Connection

from labelhub.actionhub import recommender
from labelhub.actionhub import store as actionhub_store
from labelhub.actionhub.schemas import printable
from labelhub.core import keys
from labelhub.core.access import X_API_KEY
from labelhub.core.db import Database
from labelhub.core.errors import Forbidden, Invalid, Unauthenticated
from labelhub.core.models import to_datetime

ProgramId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f-\x9f]+$")]


class Message(BaseModel):
    detail: str


class Result(BaseModel):
    result: str


class ProgramIn(BaseModel):
    program_id: ProgramId
    name: Annotated[str, Field(max_length=255), AfterValidator(printable)] | None = None
    half_life_days: Annotated[
        float,
        Field(
            gt=0,
            le=36_500,
            allow_inf_nan=False,
            description="Recommendations: the half-life of a past event's weight, in days "
            "(labelhub extension; default 30; fixed once the program exists).",
        ),
    ] = 30.0


class ProgramOut(BaseModel):
    program_id: str
    name: str
    created_at: datetime


class GrantIn(BaseModel):
    scope: Annotated[str, Field(min_length=1, max_length=1100)]
    role: str

    @model_validator(mode="after")
    def _fits(self) -> GrantIn:
        try:
            keys.parse_grant(self.scope, self.role)
        except Invalid as error:
            raise ValueError(error.message) from None
        return self


class GrantOut(BaseModel):
    scope: str
    role: str


class KeyIn(BaseModel):
    name: Annotated[str, Field(min_length=1, max_length=255), AfterValidator(printable)]
    grants: Annotated[list[GrantIn], Field(min_length=1, max_length=100)]


class KeyOut(BaseModel):
    id: int
    name: str
    prefix: str
    grants: list[GrantOut]
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class NewKeyOut(BaseModel):
    id: int
    name: str
    prefix: str
    secret: str
    grants: list[GrantOut]
    created_at: datetime


def as_datetime(ms: int) -> datetime:
    return to_datetime(ms)


def as_optional_datetime(ms: int | None) -> datetime | None:
    return None if ms is None else as_datetime(ms)


def _grants(grants: tuple[keys.Grant, ...]) -> list[GrantOut]:
    return [GrantOut(scope=g.scope, role=g.role) for g in grants]


class AdminGuard:
    """Checks, inside the request's own transaction, that the caller holds an admin key."""

    def __init__(self, db: Database, secret: str | None) -> None:
        self.db = db
        self.secret = secret

    def __call__(self, conn: Connection) -> keys.Principal:
        principal = keys.authenticate(conn, self.secret, record_use=self.db.record_key_use)
        if principal is None:
            raise Unauthenticated("Invalid or missing API key (x-api-key)")
        if not principal.is_admin:
            raise Forbidden("This key is not an admin key")
        return principal


async def _admin_guard(
    request: Request, secret: Annotated[str | None, Depends(X_API_KEY)]
) -> AdminGuard:
    return AdminGuard(request.app.state.db, secret)


Admin = Annotated[AdminGuard, Depends(_admin_guard)]

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Message, "description": "A body that is not UTF-8"},
    401: {"model": Message, "description": "Missing, unknown or revoked key"},
    403: {"model": Message, "description": "Not an admin key"},
    413: {"model": Message, "description": "Request body over 5 MiB"},
    503: {"model": Message, "description": "The database cannot be reached"},
}

router = APIRouter(prefix="/admin", tags=["admin"], responses=ERRORS)


@router.post(
    "/programs",
    status_code=201,
    responses={409: {"model": Message, "description": "The program exists"}},
)
async def create_program(body: ProgramIn, admin: Admin) -> ProgramOut:
    def work(conn: Connection) -> actionhub_store.ProgramRow:
        admin(conn)
        return actionhub_store.create_program(
            conn,
            body.program_id,
            body.name,
            half_life_ms=recommender.days_in_ms(body.half_life_days),
        )

    row = await admin.db.write(work)
    return ProgramOut(
        program_id=row.program_id, name=row.name, created_at=as_datetime(row.created_at)
    )


@router.get("/programs")
async def list_programs(admin: Admin) -> list[ProgramOut]:
    def work(conn: Connection) -> list[actionhub_store.ProgramRow]:
        admin(conn)
        return actionhub_store.list_programs(conn)

    rows = await admin.db.read(work)
    return [
        ProgramOut(program_id=r.program_id, name=r.name, created_at=as_datetime(r.created_at))
        for r in rows
    ]


@router.delete(
    "/programs/{program_id}",
    responses={404: {"model": Message, "description": "Unknown program"}},
)
async def delete_program(program_id: Annotated[str, Path(max_length=64)], admin: Admin) -> Result:
    def work(conn: Connection) -> None:
        admin(conn)
        actionhub_store.delete_program(conn, program_id)

    await admin.db.write(work)
    return Result(result=f"Program {program_id} deleted with its labels, assets and events")


@router.post("/keys", status_code=201)
async def create_key(body: KeyIn, admin: Admin) -> NewKeyOut:
    grants = [keys.Grant(g.scope, g.role) for g in body.grants]

    def work(conn: Connection) -> keys.NewKey:
        admin(conn)
        return keys.create_key(conn, body.name, grants)

    new = await admin.db.write(work)
    return NewKeyOut(
        id=new.id,
        name=new.name,
        prefix=new.prefix,
        secret=new.secret,
        grants=_grants(new.grants),
        created_at=as_datetime(new.created_at),
    )


@router.get("/keys")
async def list_keys(admin: Admin) -> list[KeyOut]:
    def work(conn: Connection) -> list[keys.KeyInfo]:
        admin(conn)
        return keys.list_keys(conn)

    return [
        KeyOut(
            id=k.id,
            name=k.name,
            prefix=k.prefix,
            grants=_grants(k.grants),
            created_at=as_datetime(k.created_at),
            last_used_at=as_optional_datetime(k.last_used_at),
            revoked_at=as_optional_datetime(k.revoked_at),
        )
        for k in await admin.db.read(work)
    ]


@router.delete(
    "/keys/{key_id}",
    responses={404: {"model": Message, "description": "Unknown key"}},
)
async def revoke_key(
    key_id: Annotated[int, Path(ge=1, le=2**31 - 1, description="The key's id")], admin: Admin
) -> Result:
    def work(conn: Connection) -> None:
        admin(conn)
        keys.revoke_key(conn, key_id)

    await admin.db.write(work)
    return Result(result=f"Key {key_id} revoked")
