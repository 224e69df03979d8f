"""The ``labelhub`` command: serve, db upgrade, programs, keys.

Every command but ``serve`` acts directly on the configured database (``LABELHUB_DATABASE_URL``),
so an operator can bootstrap without a running server. Exit codes: 0 success, 1 runtime failure,
2 usage error; errors are one line on standard error.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Annotated, Any, TypeVar

import pydantic
import typer
from rich.console import Console
from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError
from typer.exceptions import TyperException

from labelhub.actionhub import fences, recommender
from labelhub.actionhub import store as actionhub_store
from labelhub.actionhub.schemas import MAX_LABELS_PER_PUT, Label
from labelhub.core import db as dbmod
from labelhub.core import keys
from labelhub.core.config import Settings, check_admin_key
from labelhub.core.errors import Invalid, LabelhubError, NotFound, Unavailable

app = typer.Typer(
    help="labelhub: the ActionHub labels API and the HAR metadata API on one storage core.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
programs_app = typer.Typer(help="ActionHub programs.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys.", no_args_is_help=True)
labels_app = typer.Typer(help="ActionHub labels.", no_args_is_help=True)
events_app = typer.Typer(help="ActionHub events and recommendations.", no_args_is_help=True)
har_app = typer.Typer(help="HAR registries and artifacts.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(programs_app, name="programs")
app.add_typer(keys_app, name="keys")
app.add_typer(labels_app, name="labels")
app.add_typer(events_app, name="events")
app.add_typer(har_app, name="har")


T = TypeVar("T")


class UsageFailure(Exception):
    """A usage error found after parsing (exit 2)."""


def load_settings() -> Settings:
    try:
        settings = Settings()
        if settings.admin_key is not None:
            check_admin_key(settings.admin_key.get_secret_value())
    except pydantic.ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise UsageFailure(f"LABELHUB_{field.upper()}: {first['msg']}") from None
    except Invalid as error:
        raise UsageFailure(error.message) from None
    return settings


def usage(check: Callable[[], T]) -> T:
    """Run an argument check; its ``Invalid`` is a usage error (exit 2)."""
    try:
        return check()
    except Invalid as error:
        raise UsageFailure(error.message) from None


def migrate(db: dbmod.Database, *, bootstrap: bool = False) -> str | None:
    """Bring the schema to head (serialised across processes); optionally make the first key."""
    with dbmod.migration_lock(db) as conn:
        dbmod.upgrade(conn)
        with db.transaction(write=True) as writing:
            recounted = fences.recount(writing)
        if recounted:
            echo_err(f"labelhub: recounted the page chunks of {recounted} label or asset lists")
        if not bootstrap:
            return None
        admin_key = db.settings.admin_key
        with conn.begin():
            return keys.bootstrap(conn, admin_key.get_secret_value() if admin_key else None)


@contextmanager
def database() -> Iterator[dbmod.Database]:
    """The configured database, migrated, for a one-off command."""
    db = dbmod.Database(load_settings())
    try:
        migrate(db)
        yield db
    finally:
        db.close()


def echo_err(message: str) -> None:
    typer.echo(message, err=True)


# --- serve ----------------------------------------------------------------------------------


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=0, max=65535)] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes.", min=1)] = 1,
) -> None:
    """Migrate the database, make the bootstrap admin key if none exists, and serve."""
    import uvicorn
    from uvicorn.config import LOGGING_CONFIG

    settings = load_settings()
    db = dbmod.Database(settings)
    try:
        secret = migrate(db, bootstrap=True)
    finally:
        db.close()
    if secret is not None:
        echo_err(f"labelhub: created the bootstrap admin key (shown only this once): {secret}")

    log_config: dict[str, Any] = json.loads(json.dumps(LOGGING_CONFIG))
    log_config["loggers"]["labelhub"] = {
        "handlers": ["default"],
        "level": settings.log_level.upper(),
        "propagate": False,
    }
    common: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_config": log_config,
        "log_level": settings.log_level,
        "access_log": False,  # labelhub logs one line per request itself
        "server_header": False,
    }
    if workers == 1:
        from labelhub.app import create_app

        uvicorn.run(create_app(settings), **common)
    else:
        uvicorn.run("labelhub.app:app_from_env", factory=True, workers=workers, **common)


# --- db -------------------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Migrate the schema to the newest revision."""
    settings = load_settings()
    db = dbmod.Database(settings)
    try:
        migrate(db)
        with db.engine.connect() as conn:
            revision = dbmod.current_revision(conn)
    finally:
        db.close()
    echo_err(f"labelhub: database {dbmod.redacted(settings.database_url)} at revision {revision}")


# --- programs -------------------------------------------------------------------------------


@programs_app.command("create")
def programs_create(
    program_id: Annotated[str, typer.Argument(help="The program-id clients send.")],
    name: Annotated[str | None, typer.Option(help="A display name.")] = None,
    half_life_days: Annotated[
        float,
        typer.Option(
            help="Recommendations: half-life of a past event's weight, in days.",
            min=0.0001,
            max=36_500,
        ),
    ] = 30.0,
) -> None:
    """Create a program."""
    if not keys.PROGRAM_ID.fullmatch(program_id):
        raise UsageFailure("PROGRAM_ID must be 1-64 characters without control characters")
    with database() as db:
        row = db.run_write(
            actionhub_store.create_program, program_id, name, recommender.days_in_ms(half_life_days)
        )
    typer.echo(f"{row.program_id}\t{row.name}")


@programs_app.command("list")
def programs_list() -> None:
    """List programs (program-id, name, created)."""
    with database() as db:
        rows = db.run_read(actionhub_store.list_programs)
    for row in rows:
        typer.echo(f"{row.program_id}\t{row.name}\t{_iso(row.created_at)}")


@programs_app.command("delete")
def programs_delete(program_id: str) -> None:
    """Delete a program with its labels, assets and events."""
    with database() as db:
        db.run_write(actionhub_store.delete_program, program_id)
    echo_err(f"labelhub: deleted program {program_id}")


# --- keys -----------------------------------------------------------------------------------


def parse_cli_grant(text: str) -> keys.Grant:
    """``admin``, ``program:<id>=read|write`` or ``space:<path>=view|edit``."""
    scope, sep, role = text.rpartition("=")
    if not sep:
        scope, role = text, ("admin" if text == "admin" else "")
    try:
        return keys.parse_grant(scope, role)
    except Invalid as error:
        raise UsageFailure(f"--grant {text!r}: {error.message}") from None


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="What the key is for.")],
    grant: Annotated[
        list[str],
        typer.Option(
            "--grant",
            help="admin | program:<id>=read|write | space:<acct>[/<org>[/<proj>]]=view|edit "
            "(repeatable).",
        ),
    ],
) -> None:
    """Create a key; its secret is printed once, on standard output."""
    grants = [parse_cli_grant(g) for g in grant]
    with database() as db:
        new = db.run_write(keys.create_key, name, grants)
    echo_err(f"labelhub: created key {new.id} ({new.prefix}...); the secret is shown only once")
    typer.echo(new.secret)


@keys_app.command("list")
def keys_list() -> None:
    """List keys (id, prefix, name, grants, created, last used, revoked)."""
    with database() as db:
        infos = db.run_read(keys.list_keys)
    for k in infos:
        grants = ",".join(g.scope if g.kind == "admin" else f"{g.scope}={g.role}" for g in k.grants)
        typer.echo(
            "\t".join(
                [
                    str(k.id),
                    k.prefix,
                    k.name,
                    grants,
                    _iso(k.created_at),
                    _iso(k.last_used_at),
                    "revoked " + _iso(k.revoked_at) if k.revoked_at else "active",
                ]
            )
        )


@keys_app.command("revoke")
def keys_revoke(key_id: int) -> None:
    """Revoke a key; every server refuses it from its next request on."""
    with database() as db:
        db.run_write(keys.revoke_key, key_id)
    echo_err(f"labelhub: revoked key {key_id}")


# --- labels ---------------------------------------------------------------------------------


@labels_app.command("import")
def labels_import(
    file: Annotated[
        Path, typer.Argument(help="CSV (label,weight) or JSON lines ({label, weight}).")
    ],
    program: Annotated[str, typer.Option("--program", help="The program-id to import into.")],
    batch_size: Annotated[
        int, typer.Option(help="Labels per transaction.", min=1, max=MAX_LABELS_PER_PUT)
    ] = 5_000,
    file_format: Annotated[
        str | None, typer.Option("--format", help="csv or jsonl (default: from the name/content).")
    ] = None,
) -> None:
    """Upsert labels from a file, in batches with a progress bar.

    Each batch is checked whole before it is written, in one transaction: a bad line stops the
    import with its line number, and nothing of its batch is written (earlier batches are).
    """
    if not file.is_file():
        raise UsageFailure(f"{file}: no such file")
    if file_format not in (None, "csv", "jsonl"):
        raise UsageFailure("--format must be csv or jsonl")
    with database() as db:
        totals = labels_import_file(db, file, program, batch_size, file_format)
    echo_err(
        f"labelhub: imported {totals.created + totals.updated} labels into {program} "
        f"({totals.created} created, {totals.updated} updated)"
    )


def labels_import_file(
    db: dbmod.Database, file: Path, program: str, batch_size: int, file_format: str | None
) -> actionhub_store.Upserted:
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    created = updated = 0

    def write(batch: list[tuple[str, float]]) -> None:
        nonlocal created, updated

        def work(conn: Connection) -> actionhub_store.Upserted:
            pk = actionhub_store.program_pk(conn, program)
            if pk is None:
                raise NotFound(f"Program {program!r} not found")
            return actionhub_store.upsert_labels(conn, pk, batch)

        done = db.run_write(work)
        created += done.created
        updated += done.updated

    with (
        file.open("rb") as raw,
        Progress(
            TextColumn("importing"),
            BarColumn(),
            DownloadColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
            disable=not sys.stderr.isatty(),
        ) as progress,
    ):
        task = progress.add_task("import", total=file.stat().st_size)
        batch: list[tuple[str, float]] = []
        try:
            for _, label, weight in read_labels(raw, file_format or sniff_format(file)):
                batch.append((label, weight))
                if len(batch) >= batch_size:
                    write(batch)
                    batch = []
                    progress.update(task, completed=raw.tell())
        except ImportLineError as error:
            raise ImportLineError(
                f"{error.message}; nothing of its batch was written"
                f" ({created + updated} labels from earlier batches were)"
            ) from None
        if batch:
            write(batch)
        progress.update(task, completed=file.stat().st_size)
    return actionhub_store.Upserted(created, updated)


# --- events ---------------------------------------------------------------------------------


# Fold rounds between two refreshes of PostgreSQL's planner statistics during a bulk fold.
ANALYZE_EVERY = 25


@events_app.command("process")
def events_process(
    program: Annotated[str, typer.Option("--program", help="The program-id.")],
    batch_size: Annotated[int, typer.Option(help="Users per transaction.", min=1)] = 200,
) -> None:
    """Fold every pending event of the program into its recommendation statistics, then
    recompute every user's recommendations against the complete statistics (after events were
    posted with process_user_actions=false, e.g. a backfill)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with database() as db:
        pk = db.run_read(actionhub_store.program_pk, program)
        if pk is None:
            raise NotFound(f"Program {program!r} not found")
        pending, users = db.run_read(recommender.pending_users, pk), 0
        folded = 0
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            console=Console(stderr=True),
            transient=True,
            disable=not sys.stderr.isatty(),
        ) as progress:
            task = progress.add_task("folding events", total=pending)
            db.run_write(recommender.analyze)
            rounds = 0
            while taken := db.run_write(recommender.fold_pending, pk, batch_size):
                folded += taken
                progress.update(task, completed=folded)
                rounds += 1
                if rounds % ANALYZE_EVERY == 0:  # the tables grow fast: keep plans index-backed
                    db.run_write(recommender.analyze)
            db.run_write(recommender.analyze)
            total = db.run_read(recommender.user_count, pk)
            task = progress.add_task("computing recommendations", total=total)
            after: str | None = ""
            shared = recommender.Shared()  # successors and action rows, read once
            while after is not None:
                after = db.run_write(recommender.refresh_after, pk, after, batch_size, shared)
                users = min(total, users + batch_size)
                progress.update(task, completed=users)
    echo_err(
        f"labelhub: folded the events of {folded} users and refreshed the recommendations "
        f"of every user of program {program}"
    )


def sniff_format(file: Path) -> str:
    suffix = file.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in {".jsonl", ".ndjson", ".json"}:
        return "jsonl"
    with file.open("rb") as raw:
        for line in raw:
            if line.strip():
                return "jsonl" if line.lstrip().startswith(b"{") else "csv"
    return "csv"


class ImportLineError(LabelhubError):
    """A line of an import file that cannot be imported (exit 1, naming the line)."""


def read_labels(raw: IO[bytes], file_format: str) -> Iterator[tuple[int, str, float]]:
    """(line number, label, weight) for each data line; ``ImportLineError`` names a bad one."""
    text_lines = io.TextIOWrapper(raw, encoding="utf-8", newline="")
    try:
        if file_format == "csv":
            reader = csv.reader(text_lines)
            for row in reader:
                number = reader.line_num
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                if number == 1 and [c.strip().lower() for c in row] == ["label", "weight"]:
                    continue
                if len(row) != 2:
                    raise ImportLineError(
                        f"line {number}: expected 2 fields (label,weight), got {len(row)}"
                    )
                yield number, *_checked_label(number, row[0], row[1])
        else:
            for number, line in enumerate(text_lines, start=1):
                if not line.strip():
                    continue
                try:
                    item = json.loads(line)
                except ValueError as error:
                    raise ImportLineError(f"line {number}: not valid JSON ({error})") from None
                if not isinstance(item, dict):
                    raise ImportLineError(
                        f"line {number}: expected an object with label and weight"
                    )
                yield number, *_checked_label(number, item.get("label"), item.get("weight"))
    except UnicodeDecodeError as error:
        raise ImportLineError(f"the file is not UTF-8 text ({error.reason})") from None
    except csv.Error as error:
        raise ImportLineError(f"line {reader.line_num}: {error}") from None
    finally:
        text_lines.detach()


def _checked_label(number: int, label: object, weight: object) -> tuple[str, float]:
    try:
        item = Label.model_validate({"label": label, "weight": weight})
    except pydantic.ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise ImportLineError(f"line {number}: {field}: {first['msg']}") from None
    return item.label, item.weight


# --- har ------------------------------------------------------------------------------------


@har_app.command("create-registry")
def har_create_registry(
    space: Annotated[str, typer.Argument(help="<account>[/<org>[/<project>]]")],
    identifier: Annotated[str, typer.Argument(help="Lowercase letters and digits joined by . _ -")],
    package_type: Annotated[
        str, typer.Option("--package-type", help="DOCKER, PYTHON, HUGGINGFACE, ...")
    ],
    description: Annotated[str, typer.Option(help="A description.")] = "",
    label: Annotated[list[str] | None, typer.Option("--label", help="Repeatable.")] = None,
) -> None:
    """Create a (VIRTUAL) registry in a space."""
    from labelhub.har import store as har_store
    from labelhub.har.deps import space_path
    from labelhub.har.schemas import RegistryIn

    try:
        checked = RegistryIn.model_validate(
            {
                "identifier": identifier,
                "packageType": package_type,
                "description": description,
                "labels": label or [],
                "config": {"type": "VIRTUAL"},
            }
        )
    except pydantic.ValidationError as error:
        first = error.errors()[0]
        raise UsageFailure(f"{first['loc'][0]}: {first['msg']}") from None
    path = usage(lambda: space_path(space))
    with database() as db:
        row = db.run_write(
            har_store.create_registry,
            path,
            checked.identifier,
            checked.packageType,
            checked.description or "",
            checked.labels or [],
        )
    typer.echo(f"{row.space}/{row.identifier}\t{row.package_type}\t{row.uuid}")


@har_app.command("registries")
def har_registries(
    space: Annotated[str, typer.Argument(help="<account>[/<org>[/<project>]]")],
) -> None:
    """List the registries of a space and the spaces below it."""
    from labelhub.har import store as har_store
    from labelhub.har.deps import space_path

    path = usage(lambda: space_path(space))
    with database() as db:
        rows = db.run_read(lambda conn: har_store.registries_under(conn, path))
    for row in rows:
        typer.echo(f"{row.space}/{row.identifier}\t{row.package_type}\t{','.join(row.labels)}")


@har_app.command("register-artifact")
def har_register_artifact(
    registry_ref: Annotated[str, typer.Argument(help="<space>/<registry>, e.g. acct/org/models")],
    name: Annotated[str, typer.Argument(help="The artifact name (may hold /).")],
    artifact_type: Annotated[
        str | None, typer.Option("--type", help="model or dataset (HUGGINGFACE only).")
    ] = None,
    version: Annotated[str | None, typer.Option(help="The version registered.")] = None,
    label: Annotated[list[str] | None, typer.Option("--label", help="Repeatable.")] = None,
) -> None:
    """Register an artifact by its metadata."""
    from labelhub.har import store as har_store
    from labelhub.har.deps import registry_path
    from labelhub.har.schemas import ArtifactIn

    try:
        checked = ArtifactIn.model_validate(
            {"name": name, "artifactType": artifact_type, "version": version, "labels": label or []}
        )
    except pydantic.ValidationError as error:
        first = error.errors()[0]
        raise UsageFailure(f"{first['loc'][0]}: {first['msg']}") from None
    space, identifier = usage(lambda: registry_path(registry_ref))
    with database() as db:

        def work(conn: Connection) -> har_store.ArtifactRow:
            registry = har_store.find_registry(conn, space, identifier)
            return har_store.register_artifact(
                conn,
                registry,
                checked.name,
                checked.artifactType,
                checked.version,
                checked.labels or [],
            )

        artifact = db.run_write(work)
    labels = ",".join(artifact.labels)
    typer.echo(f"{artifact.name}\t{artifact.artifact_type or '-'}\t{labels}\t{artifact.uuid}")


def _iso(ms: int | None) -> str:
    from labelhub.admin import as_datetime

    return "-" if ms is None else as_datetime(ms).isoformat().replace("+00:00", "Z")


# --- entry point ----------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    command = typer.main.get_command(app)
    try:
        result = command.main(
            args=list(argv) if argv is not None else None,
            prog_name="labelhub",
            standalone_mode=False,
        )
    except TyperException as error:  # Typer's (vendored Click's) parsing errors
        if type(error).__name__ == "NoArgsIsHelpError":  # a bare group: show its help
            echo_err(error.format_message())
            return 2
        code = getattr(error, "exit_code", 1)
        echo_err(f"labelhub: error: {error.format_message()}")
        return int(code)
    except typer.Abort:
        echo_err("labelhub: aborted")
        return 1
    except UsageFailure as error:
        echo_err(f"labelhub: error: {error}")
        return 2
    except Unavailable as error:
        echo_err(f"labelhub: error: {error.message}")
        return 1
    except LabelhubError as error:
        echo_err(f"labelhub: error: {error.message}")
        return 1
    except SQLAlchemyError as error:
        first = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        echo_err(f"labelhub: database error: {first}")
        return 1
    except OSError as error:
        echo_err(f"labelhub: error: {error}")
        return 1
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
