"""HAR SQL: spaces, registries, artifacts and their labels (one row per artifact and label)."""

from __future__ import annotations

import functools
import math
import uuid as uuidlib
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import (
    Connection,
    Integer,
    String,
    Text,
    bindparam,
    column,
    delete,
    exists,
    func,
    insert,
    literal_column,
    or_,
    select,
    table,
    text,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from labelhub.actionhub.schemas import FORBIDDEN
from labelhub.core.errors import Conflict, Invalid, LabelhubError, NotFound
from labelhub.core.keys import now_ms
from labelhub.core.memo import memo, read_ahead, remembered
from labelhub.core.models import Artifact, ArtifactLabel, Registry, RegistryLabel, Space
from labelhub.core.pagination import offset_of
from labelhub.core.sql import (
    DIALECTS,
    Bulk,
    Read,
    Write,
    bulk,
    one_of,
    rows_of,
    unnested,
    write_together,
)
from labelhub.har.schemas import IDENTIFIER

HUGGINGFACE = "HUGGINGFACE"
RowT = TypeVar("RowT")


@dataclass(frozen=True)
class RegistryRow:
    id: int
    uuid: str
    space: str
    account: str
    identifier: str
    package_type: str
    registry_type: str
    description: str
    labels: list[str]
    created_at: int
    modified_at: int


@dataclass(frozen=True)
class ArtifactRow:
    id: int
    uuid: str
    name: str
    artifact_type: str  # "" outside HUGGINGFACE registries
    latest_version: str | None
    downloads_count: int
    created_at: int
    modified_at: int
    labels: list[str]

    def relabelled(self, labels: list[str], modified_at: int) -> ArtifactRow:
        """The row with these labels and ``modifiedAt``: ``dataclasses.replace``'s result at a
        fifth of its cost (it inspects the fields on every call; a write batch makes one of
        these per request)."""
        return ArtifactRow(
            self.id,
            self.uuid,
            self.name,
            self.artifact_type,
            self.latest_version,
            self.downloads_count,
            self.created_at,
            modified_at,
            labels,
        )


def _insert(conn: Connection) -> Any:
    return postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert


# --- spaces and registries ------------------------------------------------------------------


def ensure_space(conn: Connection, path: str) -> int:
    conn.execute(
        _insert(conn)(Space)
        .values(path=path, account=path.split("/", 1)[0], created_at=now_ms())
        .on_conflict_do_nothing()
    )
    space_id: int = conn.execute(select(Space.id).where(Space.path == path)).scalar_one()
    return space_id


_REGISTRY_COLUMNS = (
    Registry.id,
    Registry.uuid,
    Space.path,
    Registry.account,
    Registry.identifier,
    Registry.package_type,
    Registry.registry_type,
    Registry.description,
    Registry.labels,
    Registry.created_at,
    Registry.modified_at,
)


def _registry(row: Any) -> RegistryRow:
    return RegistryRow(*row)


_FIND_REGISTRY = (
    select(*_REGISTRY_COLUMNS)
    .join(Space, Space.id == Registry.space_id)
    .where(Space.path == bindparam("space"), Registry.identifier == bindparam("identifier"))
)


def find_registry(conn: Connection, space: str, identifier: str) -> RegistryRow:
    """The registry ``identifier`` of exactly that space (not an ancestor or descendant).

    Read once per transaction (the requests of a write batch mostly name the same registry);
    whatever creates, changes or deletes a registry forgets it (``_forget_registry``)."""
    cache = memo(conn)
    key = ("registry", space, identifier)
    if key not in cache:
        found = conn.execute(_FIND_REGISTRY, {"space": space, "identifier": identifier}).first()
        cache[key] = None if found is None else _registry(found)
    row: RegistryRow | None = cache[key]
    if row is None:
        raise NotFound("Registry not found")
    return row


def registry_reads(conn: Connection, refs: Iterable[tuple[str, str]]) -> list[Read]:
    """What ``find_registry`` will read for these (space, identifier) pairs in this transaction,
    as reads to run with others (``read_together``)."""
    cache = memo(conn)
    reads = []
    for space, identifier in set(refs):
        key = ("registry", space, identifier)
        if key in cache:
            continue

        def take(rows: Sequence[Any], key: tuple[str, str, str] = key) -> None:
            cache[key] = _registry(rows[0]) if rows else None

        reads.append(Read(_FIND_REGISTRY, {"space": space, "identifier": identifier}, take))
    return reads


def _forget_registry(conn: Connection, space: str, identifier: str) -> None:
    memo(conn).pop(("registry", space, identifier), None)


def create_registry(
    conn: Connection,
    space: str,
    identifier: str,
    package_type: str,
    description: str,
    labels: list[str],
) -> RegistryRow:
    account = space.split("/", 1)[0]
    owner = conn.execute(
        select(Space.path)
        .join(Registry, Registry.space_id == Space.id)
        .where(Registry.account == account, Registry.identifier == identifier)
    ).scalar()
    if owner is not None:
        raise Invalid(f"Registry {identifier!r} already exists in space {owner!r}")
    space_id = ensure_space(conn, space)
    now = now_ms()
    values = {
        "uuid": str(uuidlib.uuid4()),
        "space_id": space_id,
        "account": account,
        "identifier": identifier,
        "package_type": package_type,
        "registry_type": "VIRTUAL",
        "description": description,
        "labels": labels,
        "created_at": now,
        "modified_at": now,
    }
    _forget_registry(conn, space, identifier)
    savepoint = conn.begin_nested()
    try:
        conn.execute(insert(Registry).values(values))
    except IntegrityError:  # created concurrently by another writer
        savepoint.rollback()
        raise Invalid(f"Registry {identifier!r} already exists in account {account!r}") from None
    savepoint.commit()
    return find_registry(conn, space, identifier)


def update_registry(
    conn: Connection, registry: RegistryRow, description: str | None, labels: list[str] | None
) -> RegistryRow:
    values: dict[str, Any] = {"modified_at": now_ms()}
    if description is not None:
        values["description"] = description
    if labels is not None:
        values["labels"] = labels
    conn.execute(update(Registry).where(Registry.id == registry.id).values(values))
    _forget_registry(conn, registry.space, registry.identifier)
    return find_registry(conn, registry.space, registry.identifier)


def delete_registry(conn: Connection, registry: RegistryRow) -> None:
    conn.execute(delete(Registry).where(Registry.id == registry.id))
    _forget_registry(conn, registry.space, registry.identifier)


# --- artifacts ------------------------------------------------------------------------------


def check_artifact_type(registry: RegistryRow, artifact_type: str | None) -> None:
    if artifact_type is not None and registry.package_type != HUGGINGFACE:
        raise Invalid("artifact_type applies to HUGGINGFACE registries only")


# Built once: a statement built per call cost a write batch of W2 more than running it did
# (SQLAlchemy coerces each IN value and keys its compile cache anew; 9 % of the c16 profile).
_LABELS_OF = {
    dialect: select(ArtifactLabel.artifact_id, ArtifactLabel.label)
    .where(one_of(ArtifactLabel.artifact_id, "ids", Integer, dialect))
    .order_by(ArtifactLabel.artifact_id, ArtifactLabel.label)
    for dialect in DIALECTS
}


def _labels_of(conn: Connection, artifact_ids: list[int]) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {a: [] for a in artifact_ids}
    if artifact_ids:
        for artifact_id, label in rows_of(
            conn, _LABELS_OF[conn.dialect.name], {"ids": artifact_ids}
        ):
            found[artifact_id].append(label)
    return found


_ARTIFACT_COLUMNS = (
    Artifact.id,
    Artifact.uuid,
    Artifact.name,
    Artifact.artifact_type,
    Artifact.latest_version,
    Artifact.downloads_count,
    Artifact.created_at,
    Artifact.modified_at,
)


def find_artifact(
    conn: Connection,
    registry: RegistryRow,
    name: str,
    artifact_type: str | None,
    *,
    lock: bool = False,
) -> ArtifactRow:
    """The artifact ``name`` of the registry; on HUGGINGFACE, ``artifact_type`` picks between a
    model and a dataset of that name (omitted: the only one, or 400 when both exist)."""
    check_artifact_type(registry, artifact_type)
    query = select(*_ARTIFACT_COLUMNS).where(
        Artifact.registry_id == registry.id, Artifact.name == name
    )
    if artifact_type is not None:
        query = query.where(Artifact.artifact_type == artifact_type)
    if lock and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = _the_one(conn.execute(query.order_by(Artifact.artifact_type)).all(), name)
    return ArtifactRow(*row, labels=_labels_of(conn, [row.id])[row.id])


def _write_labels(
    conn: Connection, registry: RegistryRow, artifact_id: int, new: list[str], old: list[str]
) -> None:
    """Set one artifact's labels from ``old`` to ``new``; keep the registry's label counts."""
    _write_label_changes(conn, {artifact_id: registry.id}, {artifact_id: old}, {artifact_id: new})


def register_artifact(
    conn: Connection,
    registry: RegistryRow,
    name: str,
    artifact_type: str | None,
    version: str | None,
    labels: list[str],
) -> ArtifactRow:
    if registry.package_type == HUGGINGFACE and artifact_type is None:
        raise Invalid("artifactType (model or dataset) is required in a HUGGINGFACE registry")
    if registry.package_type != HUGGINGFACE and artifact_type is not None:
        raise Invalid("artifactType applies to HUGGINGFACE registries only")
    now = now_ms()
    savepoint = conn.begin_nested()
    try:
        artifact_id = conn.execute(
            insert(Artifact)
            .values(
                uuid=str(uuidlib.uuid4()),
                registry_id=registry.id,
                name=name,
                name_folded=name.casefold(),
                artifact_type=artifact_type or "",
                latest_version=version,
                downloads_count=0,
                created_at=now,
                modified_at=now,
            )
            .returning(Artifact.id)
        ).scalar_one()
    except IntegrityError:
        savepoint.rollback()
        kind = f" {artifact_type}" if artifact_type else ""
        raise Conflict(
            f"An artifact{kind} named {name!r} already exists in this registry"
        ) from None
    savepoint.commit()
    _count_artifacts(conn, registry, +1)
    _write_labels(conn, registry, artifact_id, labels, [])
    return find_artifact(conn, registry, name, artifact_type)


@dataclass(frozen=True)
class Replacement:
    """One label update: the artifact, its new label set, and a check of its current state."""

    name: str
    artifact_type: str | None
    labels: list[str]  # distinct, sorted byte-wise (as the body model leaves them)
    check: Callable[[ArtifactRow], None] | None = None


_NAMED_ARTIFACTS = {
    dialect: select(*_ARTIFACT_COLUMNS)
    .where(
        Artifact.registry_id == bindparam("registry_id"),
        one_of(Artifact.name, "names", String, dialect),
    )
    .order_by(Artifact.name, Artifact.artifact_type)
    for dialect in DIALECTS
}
# PostgreSQL: locked, so the batch's picture holds until it commits, and with each artifact's
# labels in the same statement (one round trip less per write batch than ``_labels_of``; on
# SQLite a statement is a function call, not a round trip). The labels come last, as in
# ``ArtifactRow``.
_ARTIFACT_LABELS: Any = literal_column(
    "ARRAY(SELECT l.label FROM artifact_labels AS l "
    "WHERE l.artifact_id = artifacts.id ORDER BY l.label)"
).label("labels")
_NAMED_ARTIFACTS["postgresql"] = (
    _NAMED_ARTIFACTS["postgresql"].add_columns(_ARTIFACT_LABELS).with_for_update(of=Artifact)
)
# The same, the registry named by its path (``named_artifact_reads``).
_NAMED_ARTIFACTS_AT = (
    select(*_ARTIFACT_COLUMNS, _ARTIFACT_LABELS)
    .join(Registry, Registry.id == Artifact.registry_id)
    .join(Space, Space.id == Registry.space_id)
    .where(
        Space.path == bindparam("space"),
        Registry.identifier == bindparam("identifier"),
        one_of(Artifact.name, "names", String, "postgresql"),
    )
    .order_by(Artifact.name, Artifact.artifact_type)
    .with_for_update(of=Artifact)
)


def named_artifact_reads(conn: Connection, wanted: Iterable[tuple[str, str, str]]) -> list[Read]:
    """PostgreSQL: what ``replace_label_sets`` will read for these (space, registry identifier,
    artifact name), as reads to run with a write batch's keys and registries (``read_together``,
    before the registries are known): a batch waits for the server once less (bench/README.md).
    ``replace_label_sets`` takes what they found, once. SQLite: none (a statement there is a
    function call, not a round trip)."""
    if conn.dialect.name != "postgresql":
        return []
    names: dict[tuple[str, str], set[str]] = {}
    for space, identifier, name in wanted:
        names.setdefault((space, identifier), set()).add(name)
    ahead = read_ahead(conn)
    reads = []
    for (space, identifier), these in names.items():

        def take(
            rows: Sequence[Any],
            key: tuple[str, str, str] = ("named artifacts", space, identifier),
            these: frozenset[str] = frozenset(these),
        ) -> None:
            ahead[key] = (these, rows)

        params = {"space": space, "identifier": identifier, "names": sorted(these)}
        reads.append(Read(_NAMED_ARTIFACTS_AT, params, take))
    return reads


# The label writes of ``_write_label_changes``, a row each (``Bulk``: on PostgreSQL one
# statement over the rows' arrays).
_DROP_LABEL = bulk(
    "DELETE FROM artifact_labels WHERE artifact_id = :artifact AND label = :label",
    "DELETE FROM artifact_labels AS a USING {rows} "
    "WHERE a.artifact_id = v.artifact AND a.label = v.label",
    ("artifact", "integer"),
    ("label", "text"),
)
_ADD_LABEL = bulk(
    "INSERT INTO artifact_labels (artifact_id, label, registry_id) "
    "VALUES (:artifact, :label, :registry)",
    "INSERT INTO artifact_labels (artifact_id, label, registry_id) "
    "SELECT v.artifact, v.label, v.registry FROM {rows}",
    ("artifact", "integer"),
    ("label", "text"),
    ("registry", "integer"),
)
# The counts: a registry's label at most once among the rows (the net step of the batch). On
# PostgreSQL an upsert may not meet the same row twice, and an UPDATE ... FROM would apply only
# one of two rows for it.
_COUNT_UP = bulk(
    "INSERT INTO registry_labels (registry_id, label, label_folded, artifacts) "
    "VALUES (:registry, :label, :folded, :step) ON CONFLICT (registry_id, label) "
    "DO UPDATE SET artifacts = registry_labels.artifacts + excluded.artifacts",
    "INSERT INTO registry_labels (registry_id, label, label_folded, artifacts) "
    "SELECT v.registry, v.label, v.folded, v.step FROM {rows} ON CONFLICT (registry_id, label) "
    "DO UPDATE SET artifacts = registry_labels.artifacts + excluded.artifacts",
    ("registry", "integer"),
    ("label", "text"),
    ("folded", "text"),
    ("step", "bigint"),
)
_COUNT_DOWN = bulk(
    "UPDATE registry_labels SET artifacts = artifacts + :step "
    "WHERE registry_id = :registry AND label = :label",
    "UPDATE registry_labels AS r SET artifacts = r.artifacts + v.step FROM {rows} "
    "WHERE r.registry_id = v.registry AND r.label = v.label",
    ("registry", "integer"),
    ("label", "text"),
    ("step", "bigint"),
)
_DROP_UNUSED = bulk(
    "DELETE FROM registry_labels WHERE registry_id = :registry AND label = :label "
    "AND artifacts <= 0",
    "DELETE FROM registry_labels AS r USING {rows} "
    "WHERE r.registry_id = v.registry AND r.label = v.label AND r.artifacts <= 0",
    ("registry", "integer"),
    ("label", "text"),
)
# The artifact's label set as its filters find it (migration 0006 on PostgreSQL, 0008 on SQLite,
# whose index triggers add the pairs of its labels, 0009) is written with the label rows; a label
# update sets modifiedAt in the same statement. PostgreSQL: each row's label set (or none, to
# keep it) as JSON, the arrays being of different lengths.
_TOUCH_ROWS = (("artifact", "integer"), ("now", "bigint"), ("labels", "text"))
_TOUCH = Bulk(
    text(
        "UPDATE artifacts SET modified_at = coalesce(:now, modified_at), "
        "search_labels = coalesce(:labels, search_labels) WHERE id = :artifact"
    ),
    unnested(
        "UPDATE artifacts AS a SET modified_at = coalesce(v.now, a.modified_at), "
        "search_labels = CASE v.labels WHEN 'null' THEN a.search_labels "
        "ELSE ARRAY(SELECT json_array_elements_text(CAST(v.labels AS json))) END "
        "FROM {rows} WHERE a.id = v.artifact",
        *_TOUCH_ROWS,
    ),
    _TOUCH_ROWS,
    json_params=("labels",),
)


def _search_labels(dialect: str, registry_id: int, labels: Iterable[str]) -> Any:
    """``artifacts.search_labels`` for these labels, in label order; one registry's entries are
    a posting list of their own in the label index. PostgreSQL: an array of ``<registry
    id>:<label>``. SQLite: a text of tokens of FTS5's ``ascii`` tokenizer whatever the labels
    hold, ``r<registry id>x<the label's UTF-8 in hex>`` (SQL's ``'r' || registry_id || 'x' ||
    hex(label)``), in one pass: a write batch builds hundreds."""
    if dialect == "postgresql":
        return [f"{registry_id}:{label}" for label in sorted(labels)]
    prefix = f"r{registry_id}x"
    return " ".join([prefix + label.encode().hex().upper() for label in sorted(labels)])


def _search_label(dialect: str, registry_id: int, label: str) -> str:
    """One label's element of ``artifacts.search_labels`` (``_search_labels``)."""
    found = _search_labels(dialect, registry_id, [label])
    return found[0] if dialect == "postgresql" else found  # type: ignore[no-any-return]


_REMEMBERED_TOKENS = 1024  # characters of ``search_labels`` (``_indexed``)


@remembered(entries=1024, longest=_REMEMBERED_TOKENS)
def _indexed(tokens: str) -> str:
    """SQLite: the label-set index's entry for an artifact whose ``search_labels`` is ``tokens``
    (what migration 0009's triggers build in SQL): the tokens, then a token per pair of them
    (``_pair``, the two in text order) for an artifact of up to ``PAIRED`` labels, else one token
    ``r<registry id>m``. A changed label set's entries are written from here (migration 0011): a
    batch of 32 label replacements spent 1.45 ms in the trigger that built them, 0.83 ms this
    way (bench/README.md).

    Remembered for the sets of short labels seen last: a replacement builds the entry of the set
    it removes (the one this process built when it wrote it, if it did) and of the set it
    writes, and a registry's artifacts share few sets. 3.3 us for a set of 5 labels, 0.2
    remembered; at most 1,024 entries of at most about 16 KB each (16 MB in all)."""
    each = tokens.split()
    if len(each) > PAIRED:
        return f"{tokens} {each[0].partition('x')[0]}m"
    labels = [token.partition("x")[2] for token in each]  # ``_pair``'s, without a call each
    if each == sorted(each):  # as ``_search_labels`` writes them: each later one is greater
        pairs = [a + "y" + label for i, a in enumerate(each) for label in labels[i + 1 :]]
    else:
        pairs = [f"{a}y{lb}" for a in each for b, lb in zip(each, labels, strict=True) if a < b]
    return " ".join(each + pairs)


# SQLite: a changed label set's entry in the label-set index (``_indexed``): the old one out
# (a contentless FTS5 table is told what to delete), the new one in.
_INDEX_OUT = text(
    "INSERT INTO artifact_labels_fts (artifact_labels_fts, rowid, search_labels) "
    "VALUES ('delete', :artifact, :entry)"
)
_INDEX_IN = text(
    "INSERT INTO artifact_labels_fts (rowid, search_labels) VALUES (:artifact, :entry)"
)


def _index_changes(changes: Iterable[tuple[int, str, str]]) -> list[Write]:
    """SQLite: the writes that move each artifact's entry in the label-set index from its old
    ``search_labels`` to its new one (``(artifact id, old, new)``); an artifact without labels
    has none."""
    out, into = [], []
    for artifact, old, new in changes:
        if old != new:
            if old:
                out.append({"artifact": artifact, "entry": _indexed(old)})
            if new:
                into.append({"artifact": artifact, "entry": _indexed(new)})
    return [Write(_INDEX_OUT, out), Write(_INDEX_IN, into)]


# ``_search_labels`` in SQL (PostgreSQL): an artifact's label set from its label rows.
_LABEL_ARRAY = "array_agg(registry_id || ':' || label ORDER BY label)"
_SEARCH_LABELS = table(
    "artifacts", column("id", Integer), column("registry_id", Integer), column("search_labels")
)
# SQLite: these artifacts' registries and label sets (``fill_search_labels``).
_SEARCH_LABELS_OF = select(
    _SEARCH_LABELS.c.id, _SEARCH_LABELS.c.registry_id, _SEARCH_LABELS.c.search_labels
).where(one_of(_SEARCH_LABELS.c.id, "ids", Integer, "sqlite"))
# The label-set index as the filters ask it: PostgreSQL's arrays (GIN, ``@>``), SQLite's FTS5
# table of the texts (``_fts_match``).
_LABEL_ARRAYS = column("search_labels", postgresql.ARRAY(Text))
_LABEL_FTS = table("artifact_labels_fts", column("rowid", Integer))


def _fts_match(query: Any) -> Any:
    """SQLite: the rows of ``_LABEL_FTS`` that the FTS5 ``query`` matches."""
    return literal_column("artifact_labels_fts").op("MATCH")(query)


def fill_search_labels(conn: Connection, artifact_ids: Sequence[int]) -> None:
    """Set these artifacts' label sets (``search_labels``) from their label rows, for a bulk load
    that writes ``artifact_labels`` itself (as ``bench.har_scale`` does)."""
    if not artifact_ids:
        return
    dialect = conn.dialect.name
    if dialect == "sqlite":  # with the index's entries (``_index_changes``)
        labels = _labels_of(conn, list(artifact_ids))
        changes = [
            (artifact_id, old, _search_labels(dialect, registry_id, labels[artifact_id]))
            for artifact_id, registry_id, old in rows_of(
                conn, _SEARCH_LABELS_OF, {"ids": list(artifact_ids)}
            )
            if labels[artifact_id]  # as on PostgreSQL: only artifacts with label rows
        ]
        rows = [{"artifact": a, "now": None, "labels": new} for a, _, new in changes]
        write_together(conn, [*_index_changes(changes), Write(_TOUCH, rows)])
        return
    found = (
        select(ArtifactLabel.artifact_id, literal_column(_LABEL_ARRAY).label("labels"))
        .where(one_of(ArtifactLabel.artifact_id, "ids", Integer, dialect))
        .group_by(ArtifactLabel.artifact_id)
        .subquery("found")
    )
    conn.execute(
        update(_SEARCH_LABELS)
        .values(search_labels=found.c.labels)
        .where(_SEARCH_LABELS.c.id == found.c.artifact_id),
        {"ids": list(artifact_ids)},
    )


def replace_labels(
    conn: Connection,
    registry: RegistryRow,
    name: str,
    artifact_type: str | None,
    labels: list[str],
    check: Callable[[ArtifactRow], None] | None = None,
) -> ArtifactRow:
    """Replace the artifact's label set and ``modifiedAt`` and nothing else, in this transaction.
    ``check(artifact)`` runs on the current row before anything is written (If-Match)."""
    (result,) = replace_label_sets(
        conn, [(registry, Replacement(name, artifact_type, labels, check))]
    )
    if isinstance(result, LabelhubError):
        raise result
    return result


def replace_label_sets(
    conn: Connection, requests: Sequence[tuple[RegistryRow, Replacement]]
) -> list[ArtifactRow | LabelhubError]:
    """``replace_labels`` for the requests of a write batch, in order, with a few statements for
    all of them: each answer (the artifact as it is after its request, or the error that refused
    it, having written nothing) is what running them one after another would give.

    The named artifacts are read at once (locked, on PostgreSQL), the requests are applied in
    order to that picture, and only the net change is written: labels dropped and added per
    artifact, the registry's label counts, and ``modifiedAt``.
    """
    names: dict[int, tuple[RegistryRow, set[str]]] = {}
    for registry, replacement in requests:
        names.setdefault(registry.id, (registry, set()))[1].add(replacement.name)
    statement: Any = _NAMED_ARTIFACTS[conn.dialect.name]  # PostgreSQL's has the labels too
    with_labels = conn.dialect.name == "postgresql"
    found: dict[tuple[int, str], list[ArtifactRow]] = {}
    stored: dict[int, list[str]] = {}
    ahead = read_ahead(conn)
    for registry, wanted in names.values():
        # Read with the batch's keys (``named_artifact_reads``), if that read covers these names.
        found_ahead = ahead.pop(("named artifacts", registry.space, registry.identifier), None)
        if found_ahead is not None and wanted <= found_ahead[0]:
            reads = found_ahead[1]
        else:
            params = {"registry_id": registry.id, "names": sorted(wanted)}
            reads = rows_of(conn, statement, params)
        for read in reads:
            row = ArtifactRow(*(read if with_labels else (*read, [])))
            found.setdefault((registry.id, row.name), []).append(row)
            if with_labels:
                stored[row.id] = row.labels
    if not with_labels:
        stored = _labels_of(conn, [a.id for same_name in found.values() for a in same_name])
    labels = dict(stored)  # artifact id -> its labels as the requests so far leave them
    now = now_ms()
    touched: dict[int, int] = {}  # artifact id -> registry id
    results: list[ArtifactRow | LabelhubError] = []
    for registry, replacement in requests:
        try:
            check_artifact_type(registry, replacement.artifact_type)
            rows = [
                row
                for row in found.get((registry.id, replacement.name), [])
                if replacement.artifact_type in (None, row.artifact_type)
            ]
            row = _the_one(rows, replacement.name)
            if replacement.check is not None:  # on the row as the requests so far leave it
                modified_at = now if row.id in touched else row.modified_at
                replacement.check(row.relabelled(labels[row.id], modified_at))
        except LabelhubError as error:
            results.append(error)
            continue
        labels[row.id] = replacement.labels
        touched[row.id] = registry.id
        results.append(row.relabelled(replacement.labels, now))
    if touched:
        # Read in this write transaction (locked on PostgreSQL): the rows are all there.
        _write_label_changes(conn, touched, stored, labels, now=now)
    return results


def _the_one(rows: Sequence[RowT], name: str) -> RowT:
    if not rows:
        raise NotFound("Artifact not found")
    if len(rows) > 1:
        raise Invalid(
            f"Both a model and a dataset named {name!r} exist; give artifact_type=model or dataset"
        )
    return rows[0]


def _write_label_changes(
    conn: Connection,
    touched: dict[int, int],
    before: dict[int, list[str]],
    after: dict[int, list[str]],
    *,
    now: int | None = None,
) -> None:
    """Write the net change of artifacts' labels (``touched``: artifact id -> registry id) from
    ``before`` to ``after``, and keep their registries' label counts: a few statements for all.
    With ``now``, every touched artifact's ``modifiedAt`` becomes ``now``."""
    dropped: list[dict[str, Any]] = []
    added: list[dict[str, Any]] = []
    steps: Counter[tuple[int, str]] = Counter()
    dialect = conn.dialect.name
    touches: list[dict[str, Any]] = []  # modified_at and search_labels
    index: list[tuple[int, str, str]] = []  # SQLite: the label-set index's entries
    for artifact, registry in sorted(touched.items()):
        old, new = set(before[artifact]), set(after[artifact])
        if old != new:
            labels = _search_labels(dialect, registry, new)
            touches.append({"artifact": artifact, "now": now, "labels": labels})
            if dialect == "sqlite":
                index.append((artifact, _search_labels(dialect, registry, old), labels))
        elif now is not None:
            touches.append({"artifact": artifact, "now": now, "labels": None})
        for label in sorted(old - new):
            dropped.append({"artifact": artifact, "label": label})
            steps[registry, label] -= 1
        for label in sorted(new - old):
            added.append({"artifact": artifact, "label": label, "registry": registry})
            steps[registry, label] += 1
    up = [
        {"registry": r, "label": label, "folded": label.casefold(), "step": step}
        for (r, label), step in sorted(steps.items())
        if step > 0
    ]
    down = [
        {"registry": r, "label": label, "step": step}
        for (r, label), step in sorted(steps.items())
        if step < 0
    ]
    write_together(
        conn,
        [
            Write(_DROP_LABEL, dropped),
            Write(_ADD_LABEL, added),
            Write(_COUNT_UP, up),
            Write(_COUNT_DOWN, down),
            Write(_DROP_UNUSED, down),
            Write(_TOUCH, touches),
            *_index_changes(index),
        ],
    )


def delete_artifact(
    conn: Connection, registry: RegistryRow, name: str, artifact_type: str | None
) -> None:
    artifact = find_artifact(conn, registry, name, artifact_type, lock=True)
    _write_labels(conn, registry, artifact.id, [], artifact.labels)
    conn.execute(delete(Artifact).where(Artifact.id == artifact.id))
    _count_artifacts(conn, registry, -1)


def _count_artifacts(conn: Connection, registry: RegistryRow, step: int) -> None:
    conn.execute(
        update(Registry)
        .where(Registry.id == registry.id)
        .values(artifact_count=Registry.artifact_count + step)
    )


# --- listings -------------------------------------------------------------------------------

ARTIFACT_SORT = {
    "name": Artifact.name,
    "lastModified": Artifact.modified_at,
    "downloadsCount": Artifact.downloads_count,
}
REGISTRY_SORT = {"identifier": Registry.identifier, "lastModified": Registry.modified_at}


def _contains(dialect: str, column: Any, needle: Any) -> Any:
    """``column`` (folded text) holds ``needle`` (folded text, or a parameter bound to it) as a
    plain substring (no wildcards)."""
    function = func.instr if dialect == "sqlite" else func.strpos
    return function(column, needle) > 0


def _unmatchable(search: str | None) -> bool:
    return search is not None and FORBIDDEN.search(search) is not None


@dataclass(frozen=True)
class ArtifactListItem:
    registry: RegistryRow
    artifact: ArtifactRow


@dataclass(frozen=True)
class ArtifactQuery:
    """What an artifact listing asks for (the query parameters of both listings)."""

    labels: list[str]
    search: str | None
    artifact_type: str | None
    page: int
    size: int
    sort_field: str
    sort_order: str


def list_artifacts(
    conn: Connection, registries: list[RegistryRow], q: ArtifactQuery
) -> tuple[list[ArtifactListItem], int]:
    """Artifacts of the given registries carrying every label in ``q.labels``, one page."""
    labels, search, artifact_type = q.labels, q.search, q.artifact_type
    by_id = {r.id: r for r in registries}
    if not by_id or _unmatchable(search) or any(_unmatchable(label) for label in labels):
        return [], 0  # stored labels and names hold no control characters
    offset = offset_of(q.page, q.size, first_page=0)
    sort_key = ARTIFACT_SORT[q.sort_field]
    columns = (*_ARTIFACT_COLUMNS, Artifact.registry_id)
    if not labels and search is None and artifact_type is None:
        # Every artifact of these registries: the kept counts, and the page off the sort index.
        total = conn.execute(
            select(func.coalesce(func.sum(Registry.artifact_count), 0)).where(
                Registry.id.in_(by_id)
            )
        ).scalar_one()
        if offset >= total:
            return [], total
        rows = conn.execute(
            select(*columns)
            .where(Artifact.registry_id.in_(by_id))
            .order_by(*_ordered(q.sort_order, sort_key, Artifact.id))
            .limit(q.size)
            .offset(offset)
        ).all()
    else:
        wanted = sorted(set(labels))
        carried = _label_counts(conn, list(by_id), wanted)
        if wanted and not carried:
            return [], 0  # no registry has every label
        walked = None
        if len(carried) == 1 and search is None and artifact_type is None:
            ((registry_id, (counts, artifacts)),) = carried.items()
            walked = _walk(conn, registry_id, counts, artifacts, q, offset)
        if walked is not None:
            rows, total = walked
        else:
            rows, total = _sort_matches(conn, sorted(carried), wanted, q, offset)
    if not rows:
        return [], total
    labels_by_artifact = _labels_of(conn, [row.id for row in rows])
    return [
        ArtifactListItem(
            by_id[row.registry_id], ArtifactRow(*row[:8], labels=labels_by_artifact[row.id])
        )
        for row in rows
    ], total


def _ordered(order: str, *keys: Any) -> tuple[Any, ...]:
    """``keys`` each ascending (``order`` "ASC") or each descending."""
    return tuple(key.asc() if order == "ASC" else key.desc() for key in keys)


_LABEL_COUNTS = {
    dialect: select(
        RegistryLabel.registry_id,
        RegistryLabel.label,
        RegistryLabel.artifacts,
        Registry.artifact_count,
    )
    .join(Registry, Registry.id == RegistryLabel.registry_id)
    .where(
        one_of(RegistryLabel.registry_id, "registries", Integer, dialect),
        one_of(RegistryLabel.label, "labels", String, dialect),
    )
    for dialect in DIALECTS
}


def _label_counts(
    conn: Connection, registries: list[int], wanted: list[str]
) -> dict[int, tuple[dict[str, int], int]]:
    """The registries (of ``registries``) that carry every label of ``wanted``: registry id ->
    (label -> how many of its artifacts carry it, how many artifacts it holds), from the kept
    counts. No labels: every registry, with no counts."""
    if not wanted:
        return {registry: ({}, 0) for registry in registries}
    found: dict[int, tuple[dict[str, int], int]] = {}
    statement = _LABEL_COUNTS[conn.dialect.name]
    for registry, label, carrying, artifacts in conn.execute(
        statement, {"registries": registries, "labels": wanted}
    ):
        found.setdefault(registry, ({}, artifacts))[0][label] = carrying
    return {r: found[r] for r in sorted(found) if len(found[r][0]) == len(wanted)}


def _sort_matches(
    conn: Connection, candidates: list[int], wanted: list[str], q: ArtifactQuery, offset: int
) -> tuple[Sequence[Any], int]:
    """One page of the artifacts of ``candidates`` (``_label_counts``: the registries that have
    every label of ``wanted``, or all of them) that carry those labels and match the search and
    type, and their count: every match found with its sort key, and sorted."""
    dialect = conn.dialect.name
    params: dict[str, Any] = {"size": q.size, "offset": offset, "registries": candidates}
    sets = 0
    if len(wanted) == 1:
        params["label"] = wanted[0]
    elif wanted and dialect == "postgresql":
        sets = len(candidates)
        params |= {f"set{i}": _label_set(dialect, r, wanted) for i, r in enumerate(candidates)}
    elif wanted:  # the tokens name their registry: one query finds the candidates' artifacts
        params["label_set"] = " OR ".join(_label_set(dialect, r, wanted) for r in candidates)
    if q.artifact_type is not None:
        params["artifact_type"] = q.artifact_type
    if q.search:
        params["needle"] = q.search.casefold()
    page, count = _sort_statements(
        dialect,
        q.sort_field,
        q.sort_order,
        min(len(wanted), 2),
        sets,
        q.artifact_type is not None,
        bool(q.search),
    )
    rows = conn.execute(page, params).all()
    if rows:
        return rows, int(rows[0].matches_in_all)
    # past the last page (or no match): count alone
    return rows, conn.execute(count, params).scalar_one()


@functools.lru_cache(maxsize=256)
def _sort_statements(
    dialect: str, sort_field: str, order: str, labels: int, sets: int, typed: bool, search: bool
) -> tuple[Any, Any]:
    """``_sort_matches``'s statements, the page with the count beside it and the count alone, for
    a dialect, a sort, no label / one / more (PostgreSQL: and how many registries' label sets,
    ``sets``), a type and a search (built once: the rest is bound). Bound: ``registries``,
    ``size``, ``offset``; ``label`` (one label), ``set0``... (PostgreSQL, more) or ``label_set``
    (SQLite, more); ``artifact_type``, ``needle`` (the folded search)."""
    matches = _matching_artifacts(dialect, labels, sets)
    if typed:
        matches = matches.where(Artifact.artifact_type == bindparam("artifact_type"))
    if search:
        matches = matches.where(_contains(dialect, Artifact.name_folded, bindparam("needle")))
    sort_key = ARTIFACT_SORT[sort_field]
    # One statement (one snapshot: an artifact deleted meanwhile is in neither or both): the
    # matches are found once with their sort keys (MATERIALIZED: PostgreSQL left to itself walks
    # the sort index and filters every artifact of the registry, 570 ms for 3,300 matches of
    # 1M), the page is sorted out of them by the sort key alone and its rows joined back, and the
    # matches are counted beside it (a window over all of them carried every match through the
    # sort: W6 filter_common at 1M, SQLite SQL 8.5 -> 8.0 ms, end to end within the noise).
    found = (
        matches.add_columns(sort_key.label("sort_key")).cte("matches").prefix_with("MATERIALIZED")
    )
    page = _bound_page(found, order)
    counted = select(func.count().label("matches_in_all")).select_from(found).subquery()
    rows = _joined_back(page, order, counted.c.matches_in_all).join(counted, true())
    return rows, select(func.count()).select_from(matches.subquery())


def _bound_page(found: Any, order: str, *conditions: Any) -> Any:
    """The page (``size`` rows from ``offset``, both bound) of ``found``'s rows (``id``,
    ``sort_key``) that meet ``conditions``, sorted by their sort key, then id."""
    return (
        select(found.c.id, found.c.sort_key)
        .where(*conditions)
        .order_by(*_ordered(order, found.c.sort_key, found.c.id))
        .limit(bindparam("size"))
        .offset(bindparam("offset"))
        .subquery()
    )


def _joined_back(page: Any, order: str, *columns: Any) -> Any:
    """The page's artifact rows (``_ARTIFACT_COLUMNS`` and the registry), and ``columns``, in
    the page's order."""
    return (
        select(*_ARTIFACT_COLUMNS, Artifact.registry_id, *columns)
        .select_from(page)
        .join(Artifact, Artifact.id == page.c.id)
        .order_by(*_ordered(order, page.c.sort_key, page.c.id))
    )


# A walked page reads this many times the artifacts that labels carried independently of each
# other would need to fill it; and it is walked only while it reads fewer artifacts than
# sorting would read matches (a walked artifact costs a probe of its label rows, about what a
# match costs to read and sort: W6, bench/README.md).
_WALK_SLACK = 2


def _walk(
    conn: Connection,
    registry_id: int,
    counts: dict[str, int],
    artifacts: int,
    q: ArtifactQuery,
    offset: int,
) -> tuple[Sequence[Any], int] | None:
    """One page of one registry's artifacts that carry every label of ``counts`` (label -> how
    many of its ``artifacts`` carry it), sorted by ``lastModified``, and their count; None when
    this is not the cheaper way (another sort; labels so rare that the walk would read more
    artifacts than there are matches to sort) or when the artifacts it read held too few
    matches.

    The registry's artifacts are read in ``lastModified`` order off their sort index
    ``(registry_id, modified_at)``, each one's labels probed in the ``(artifact_id, label)``
    key, and the page is the first matches among them: ``label=prod`` (a third of 1M artifacts)
    reads 60 of them where sorting read 333,334. The walk reads a bounded number: with labels
    independent, enough for the page twice over. Had they too few matches (labels that go
    together less than that, or matches at the other end of the order), the caller sorts every
    match instead: the walk is never wrong, at worst wasted. The count beside the page: one
    label's kept count, or two labels and more counted in the label-set index (GIN, FTS5). One
    statement (one snapshot).
    """
    if q.sort_field != "lastModified" or not counts or not artifacts:
        return None
    wanted = sorted(counts)
    share = math.prod(counts[label] / artifacts for label in wanted)
    budget = min(math.ceil(_WALK_SLACK * (offset + q.size) / share), artifacts + 1)
    if budget > artifacts * share:
        return None
    dialect = conn.dialect.name
    params: dict[str, Any] = {"registry": registry_id, "budget": budget}
    params |= {"size": q.size, "offset": offset}
    # The rarest label is probed first: most artifacts stop there.
    probed = sorted(wanted, key=lambda label: (counts[label], label))
    params |= {f"label{i}": label for i, label in enumerate(probed)}
    if len(wanted) > 1:
        params["label_set"] = _label_set(dialect, registry_id, wanted)
    rows = conn.execute(_walk_statement(dialect, q.sort_order, len(wanted)), params).all()
    # The page is right when it is full (the artifacts read hold the first offset + size
    # matches) or the walk read every artifact.
    if rows and (len(rows) == q.size or rows[0].walked < budget):
        return rows, int(rows[0].matches_in_all)
    return None


@functools.cache
def _walk_statement(dialect: str, order: str, labels: int) -> Any:
    """``_walk``'s statement for a dialect, an order and a number of labels (built once: the
    rest is bound). Bound: ``registry``, ``budget`` (artifacts to read), ``size``, ``offset``,
    ``label0``...; with two labels or more, ``label_set`` (the labels as the label-set index
    matches them)."""
    walked = (
        select(Artifact.id, Artifact.modified_at.label("sort_key"))
        .where(Artifact.registry_id == bindparam("registry"))
        .order_by(*_ordered(order, Artifact.modified_at, Artifact.id))
        .limit(bindparam("budget"))
        .cte("walked")
        .prefix_with("MATERIALIZED")
    )
    label_rows = ArtifactLabel.__table__.alias("carried")
    carries = [
        exists().where(
            label_rows.c.artifact_id == walked.c.id, label_rows.c.label == bindparam(f"label{i}")
        )
        for i in range(labels)
    ]
    page = _bound_page(walked, order, *carries)
    if labels == 1:  # the kept count
        counted = select(RegistryLabel.artifacts).where(
            RegistryLabel.registry_id == bindparam("registry"),
            RegistryLabel.label == bindparam("label0"),
        )
    elif dialect == "postgresql":
        holding = bindparam("label_set", type_=postgresql.ARRAY(Text))
        counted = (
            select(func.count())
            .where(Artifact.registry_id == bindparam("registry"), _LABEL_ARRAYS.contains(holding))
            .correlate(None)  # its own artifacts, not the page's
        )
    else:  # FTS5 alone: no artifact row is read
        counted = (
            select(func.count()).select_from(_LABEL_FTS).where(_fts_match(bindparam("label_set")))
        )
    read = select(func.count()).select_from(walked).scalar_subquery()
    return _joined_back(
        page, order, counted.scalar_subquery().label("matches_in_all"), read.label("walked")
    )


def _matching_artifacts(dialect: str, labels: int, sets: int) -> Any:
    """``SELECT artifacts.id`` of the artifacts of the registries bound as ``registries`` that
    carry every label asked for: none (``labels`` 0), the one bound as ``label`` (1), or more
    (2), bound as the label-set index is asked (``_label_set``): PostgreSQL, ``sets`` arrays
    ``set0``... (one per registry), SQLite, one FTS5 query ``label_set``. With labels, the
    registries are those that have each.

    Two labels or more are looked up in the index of the artifacts' label sets: PostgreSQL's GIN
    index of their arrays (migration 0006), SQLite's FTS5 index of their token texts (0008).
    PostgreSQL intersects one posting list per label and registry, skipping through the long
    ones; SQLite reads one per pair of labels (``_label_set``, migration 0009; W6,
    bench/README.md). One label is the stretch of the (registry_id, label, artifact_id) index
    that lists its artifacts.
    """
    registries: Any = bindparam("registries", expanding=True)
    if not labels:
        return select(Artifact.id).where(Artifact.registry_id.in_(registries))
    if labels > 1:
        if dialect == "postgresql":
            holding = [bindparam(f"set{i}", type_=postgresql.ARRAY(Text)) for i in range(sets)]
            return select(Artifact.id).where(
                Artifact.registry_id.in_(registries),
                or_(*(_LABEL_ARRAYS.contains(h) for h in holding)),
            )
        return (
            select(Artifact.id)
            .select_from(_LABEL_FTS)
            .join(Artifact, Artifact.id == _LABEL_FTS.c.rowid)
            .where(_fts_match(bindparam("label_set")))
        )
    return (
        select(Artifact.id)
        .select_from(ArtifactLabel)
        .join(Artifact, Artifact.id == ArtifactLabel.artifact_id)
        .where(ArtifactLabel.registry_id.in_(registries), ArtifactLabel.label == bindparam("label"))
    )


# SQLite: artifacts of up to this many labels hold a token per pair of them in the label-set
# index, those of more a token of their own (migration 0009, which writes them).
PAIRED = 16


def _label_set(dialect: str, registry_id: int, wanted: list[str]) -> Any:
    """What the label-set index is asked for the registry's artifacts carrying every label of
    ``wanted``: PostgreSQL, the array they hold (``@>``); SQLite, an FTS5 query.

    SQLite: an artifact of up to ``PAIRED`` labels holds a token per pair of them (migration
    0009), so two labels are one posting list read, not two intersected (W6 at 1M artifacts,
    ``label=prod&label=team-N``: 2.7 -> 0.2 ms); more labels ask for a pair per two of them (the
    last two when they are odd in number). Artifacts of more labels hold a token of their own,
    and are asked for by their label tokens. Tokens are letters and digits, so quoted they are
    themselves."""
    tokens = sorted(_search_label(dialect, registry_id, label) for label in wanted)
    if dialect == "postgresql":
        return tokens
    if len(tokens) == 1:
        return f'"{tokens[0]}"'
    firsts = [*range(0, len(tokens) - 1, 2), *([len(tokens) - 2] if len(tokens) % 2 else [])]
    pairs = [_pair(tokens[i], tokens[i + 1]) for i in firsts]
    many = [f"r{registry_id}m", *tokens]
    return f"(({_all_of(pairs)}) OR ({_all_of(many)}))"


def _pair(first: str, second: str) -> str:
    """The token of two label tokens (``first`` < ``second``) in the label-set index (SQLite)."""
    return f"{first}y{second.partition('x')[2]}"


def _all_of(tokens: list[str]) -> str:
    return " AND ".join(f'"{token}"' for token in tokens)


def list_registry_labels(
    conn: Connection, registry: RegistryRow, search: str | None, page: int, size: int
) -> tuple[list[str], int]:
    """The registry's distinct labels, sorted; paging and the total count labels."""
    if _unmatchable(search):
        return [], 0
    query = select(RegistryLabel.label).where(RegistryLabel.registry_id == registry.id)
    if search:
        folded = search.casefold()
        query = query.where(_contains(conn.dialect.name, RegistryLabel.label_folded, folded))
    total = conn.execute(select(func.count()).select_from(query.subquery())).scalar_one()
    offset = offset_of(page, size, first_page=0)
    if offset >= total:
        return [], total
    labels = conn.execute(query.order_by(RegistryLabel.label).limit(size).offset(offset)).scalars()
    return list(labels), total


def registries_under(
    conn: Connection,
    space: str,
    *,
    identifiers: list[str] | None = None,
    package_types: list[str] | None = None,
) -> list[RegistryRow]:
    """The registries of ``space`` and of every space below it."""
    query = (
        select(*_REGISTRY_COLUMNS)
        .join(Space, Space.id == Registry.space_id)
        .where((Space.path == space) | (func.substr(Space.path, 1, len(space) + 1) == space + "/"))
    )
    if identifiers:
        # Only well-formed identifiers can name a registry (and NUL cannot reach PostgreSQL).
        query = query.where(
            Registry.identifier.in_([i for i in identifiers if IDENTIFIER.fullmatch(i)])
        )
    if package_types:
        query = query.where(Registry.package_type.in_(package_types))
    return [_registry(row) for row in conn.execute(query.order_by(Registry.id))]


@dataclass(frozen=True)
class RegistryListItem:
    registry: RegistryRow
    artifacts: int
    downloads: int


def list_registries(
    conn: Connection,
    space: str,
    *,
    package_type: str | None,
    search: str | None,
    page: int,
    size: int,
    sort_field: str,
    sort_order: str,
) -> tuple[list[RegistryListItem], int]:
    if _unmatchable(search):
        return [], 0
    found = registries_under(conn, space, package_types=[package_type] if package_type else None)
    if search:
        needle = search.casefold()
        found = [r for r in found if needle in r.identifier.casefold()]
    key = {
        "identifier": lambda r: (r.identifier.encode(), r.id),
        "lastModified": lambda r: (r.modified_at, r.id),
    }[sort_field]
    found.sort(key=key, reverse=sort_order == "DESC")
    offset = offset_of(page, size, first_page=0)
    chosen = found[offset : offset + size]
    figures: dict[int, tuple[int, int]] = {}
    if chosen:
        for registry_id, count, downloads in conn.execute(
            select(
                Artifact.registry_id,
                func.count(),
                func.coalesce(func.sum(Artifact.downloads_count), 0),
            )
            .where(Artifact.registry_id.in_([r.id for r in chosen]))
            .group_by(Artifact.registry_id)
        ):
            figures[registry_id] = (int(count), int(downloads))
    return [RegistryListItem(r, *figures.get(r.id, (0, 0))) for r in chosen], len(found)
