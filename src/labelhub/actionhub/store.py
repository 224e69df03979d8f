"""ActionHub SQL: programs (administered through /admin and the CLI) and what they own."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, delete, insert, select
from sqlalchemy.exc import IntegrityError

from labelhub.core.errors import Conflict, NotFound
from labelhub.core.keys import now_ms
from labelhub.core.models import Program


@dataclass(frozen=True)
class ProgramRow:
    program_id: str
    name: str
    created_at: int


def create_program(conn: Connection, program_id: str, name: str | None = None) -> ProgramRow:
    created = now_ms()
    row = ProgramRow(program_id, name if name is not None else program_id, created)
    savepoint = conn.begin_nested()
    try:
        conn.execute(
            insert(Program).values(program_id=program_id, name=row.name, created_at=created)
        )
    except IntegrityError:
        savepoint.rollback()
        raise Conflict(f"Program {program_id!r} already exists") from None
    savepoint.commit()
    return row


def list_programs(conn: Connection) -> list[ProgramRow]:
    return [
        ProgramRow(r.program_id, r.name, r.created_at)
        for r in conn.execute(
            select(Program.program_id, Program.name, Program.created_at).order_by(
                Program.program_id
            )
        )
    ]


def delete_program(conn: Connection, program_id: str) -> None:
    """Remove a program with its labels and assets (foreign keys cascade)."""
    deleted = conn.execute(delete(Program).where(Program.program_id == program_id))
    if deleted.rowcount == 0:
        raise NotFound("Program not found")
