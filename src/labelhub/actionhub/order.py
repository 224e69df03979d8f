"""SQLite: label rows numbered in label order, so the search index lists matches in page order.

A program's labels are sorted by label, and a search lists its matches in that order. FTS5 finds
the matches of a search by rowid, in rowid order; when each label row's rowid was assigned
without regard to its label, a page of 50 needed every match's row read and sorted (``amber-``:
20,000 rows, 19 ms of SQL at 1,000,000 labels). Here, on SQLite, a label row's rowid is its
*order key*: ``program_pk << ORDER_BITS`` (the program's band) plus a number that grows with the
label (byte order, as ``ORDER BY label`` sorts). Then, for a search of 3 characters or more, the
FTS5 index alone answers both halves of a page (``store._page``): the matches' count, as the
rowids within the band that hold the search as a trigram phrase, and the page, as the first
rowids of that list (``amber-`` at 1M: 2.0 ms for the count, 0.1 for the page).

Keys are handed out with room between them (``SPACING`` when the band has it), and a new label
takes a key between its neighbours' keys. When a gap has no room left, the smallest window of
keys around it that is sparse enough is renumbered evenly (Bender et al., "Two simplified
algorithms for maintaining order in a list", 2002: a window of ``2**i`` keys is used when it
holds at most ``DENSITY**i`` rows, so each insert moves O(log n) rows amortized). Moved rows get
their FTS5 entries rewritten with them.

Program ids must stay below ``2**BAND_BITS``; on SQLite ``store.create_program`` takes the
smallest free id before that (``free_program_id``). PostgreSQL keeps its own row ids: its
search index cannot list matches in any order.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection

BAND_BITS = 24  # program ids below 16,777,216
ORDER_BITS = 63 - BAND_BITS  # 5.5e11 keys per program
BAND = 1 << ORDER_BITS
SPACING = 1 << 14  # the step between keys handed out where the band has room
LEAD = 64  # labels between two others take 1/LEAD of the room after the first, at most
DENSITY = 1.7  # a renumbered window of 2**i keys holds at most DENSITY**i rows


def band(pk: int) -> tuple[int, int]:
    """The first and last key of program ``pk``'s band."""
    if not 0 < pk < 1 << BAND_BITS:
        raise ValueError(f"program pk {pk} is outside the label order bands")
    return pk << ORDER_BITS, ((pk + 1) << ORDER_BITS) - 1


def free_program_id(conn: Connection) -> int | None:
    """The id a new program gets on SQLite: None (the next id, SQLite's own choice) while that is
    inside the bands, else the smallest id no program holds; ``OverflowError`` when there is none.
    """
    top = conn.exec_driver_sql("SELECT max(id) FROM programs").scalar()
    if top is None or top + 1 < 1 << BAND_BITS:
        return None
    free = conn.exec_driver_sql(
        "SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM programs WHERE id = 1) "
        "UNION ALL SELECT min(p.id) + 1 FROM programs AS p "
        "WHERE NOT EXISTS (SELECT 1 FROM programs AS q WHERE q.id = p.id + 1) "
        "LIMIT 1"
    ).scalar()
    if free is None or free >= 1 << BAND_BITS:
        raise OverflowError(f"a SQLite database holds at most {(1 << BAND_BITS) - 1} programs")
    return int(free)


# For each new label (sorted, in a JSON array): the key of the program's label right before it
# and of the one right after it (NULL at either end), read from the (program_pk, label) index.
NEIGHBOURS = (
    "SELECT j.value, "
    "(SELECT rowid FROM program_labels WHERE program_pk = ?2 AND label < j.value "
    "ORDER BY label DESC LIMIT 1), "
    "(SELECT rowid FROM program_labels WHERE program_pk = ?2 AND label > j.value "
    "ORDER BY label LIMIT 1) "
    "FROM json_each(?1) AS j ORDER BY j.key"
)
# The program's first and last label (one row when it has one label, none when it has none).
EDGES = (
    "SELECT rowid, label FROM program_labels WHERE rowid IN "
    "((SELECT min(rowid) FROM program_labels WHERE rowid BETWEEN ?1 AND ?2), "
    "(SELECT max(rowid) FROM program_labels WHERE rowid BETWEEN ?1 AND ?2)) ORDER BY rowid"
)
COUNT_KEYS = "SELECT count(*) FROM program_labels WHERE rowid BETWEEN ? AND ?"
KEYS_IN = "SELECT rowid FROM program_labels WHERE rowid BETWEEN ? AND ? ORDER BY rowid"
FTS_DROP = (
    "INSERT INTO program_labels_fts (program_labels_fts, rowid, label_folded) "
    "SELECT 'delete', rowid, label_folded FROM program_labels WHERE rowid BETWEEN ? AND ?"
)
FTS_ADD = (
    "INSERT INTO program_labels_fts (rowid, label_folded) "
    "SELECT rowid, label_folded FROM program_labels WHERE rowid BETWEEN ? AND ?"
)
MOVE = "UPDATE program_labels SET rowid = ? WHERE rowid = ?"


@dataclass
class Gap:
    """New labels (sorted) that fall between the same two existing labels' keys."""

    before: int | None
    after: int | None
    names: list[str]


def spread(start: int, end: int, count: int) -> list[int]:
    """``count`` increasing keys strictly between ``start`` and ``end``, as evenly as they go."""
    width = end - start
    return [start + (i + 1) * width // (count + 1) for i in range(count)]


def _keys_in_gap(gap: Gap, first: int, last: int) -> list[int] | None:
    """Keys for the gap's labels without moving any row, or None when the gap has no room.

    In an empty band they share its middle half evenly. Before the first label or after the
    last they step ``SPACING`` away from it: labels that come in order keep coming at the same
    end, and each takes ``SPACING``, not half of what is left. Between two labels they step
    the larger of that and 1/``LEAD`` of their even share away from the first: labels also come
    in order between two others (the bench's ``word-noun-NNNNNNN``, each group's numbers
    counting up), and halving the room each time ran it out. Loading the bench's 1,000,000
    labels 10,000 at a time, keys halfway between renumbered rows 21,344 times in the first
    300,000 (30 s against 6); stepping from the first renumbered none in all 1,000,000.
    """
    count = len(gap.names)
    if gap.before is None and gap.after is None:
        return spread(first + BAND // 4, last - BAND // 4, count)
    low = first - 1 if gap.before is None else gap.before
    high = last + 1 if gap.after is None else gap.after
    if high - low - 1 < count:
        return None
    step = min((high - low) // (count + 1), SPACING)
    if gap.before is not None and gap.after is not None:
        step = max(step, (high - low) // (count + 1) // LEAD)
    if gap.before is None:
        return [high - (count - i) * step for i in range(count)]
    return [low + (i + 1) * step for i in range(count)]


def _renumber(conn: Connection, gap: Gap, first: int, last: int) -> list[int]:
    """Renumber the smallest sparse-enough window of keys around the gap, evenly, with room for
    the gap's labels, and return their keys. Moved rows keep their FTS5 entries."""
    anchor = gap.before if gap.before is not None else gap.after
    assert anchor is not None  # an empty band always has room
    count = len(gap.names)
    for bits in range(1, ORDER_BITS + 1):
        start = first + ((anchor - first) >> bits << bits)
        end = min(start + (1 << bits) - 1, last)
        held = conn.exec_driver_sql(COUNT_KEYS, (start, end)).scalar_one()
        if held + count + 1 <= min(DENSITY**bits, end - start + 1) or bits == ORDER_BITS:
            break
    keys = [k for (k,) in conn.exec_driver_sql(KEYS_IN, (start, end))]
    # The window's rows with the new labels in their place: right after `before` if it is in
    # the window, else right before `after` (the window's first row, then).
    at = keys.index(gap.before) + 1 if gap.before is not None and gap.before in keys else 0
    fresh = spread(start - 1, end + 1, len(keys) + count)
    moved = fresh[:at] + fresh[at + count :]
    conn.exec_driver_sql(FTS_DROP, (start, end))
    conn.exec_driver_sql(MOVE, [(-k, k) for k in keys])  # out of the way of one another
    conn.exec_driver_sql(MOVE, [(new, -old) for new, old in zip(moved, keys, strict=True)])
    conn.exec_driver_sql(FTS_ADD, (start, end))
    return fresh[at : at + count]


def gaps(conn: Connection, pk: int, names: Sequence[str]) -> list[Gap]:
    """The new labels ``names`` (none of them in the program yet) grouped by the gap they fall
    in, in label order. Labels that all go after the program's last label, or before its first,
    or into an empty program, are one gap, found without asking each label's neighbours (W4's
    10,000 new labels into a new program: 122,647 -> 143,396 labels/s end to end; 161,888
    before ``order``)."""
    names = sorted(names)
    first, last = band(pk)
    edges = conn.exec_driver_sql(EDGES, (first, last)).all()
    if not edges:  # an empty band
        return [Gap(None, None, names)]
    (low, lowest), (high, highest) = edges[0], edges[-1]
    if names[0] > highest:  # after the last label
        return [Gap(high, None, names)]
    if names[-1] < lowest:  # before the first
        return [Gap(None, low, names)]
    found: list[Gap] = []
    rows = conn.exec_driver_sql(NEIGHBOURS, (json.dumps(names, ensure_ascii=False), pk))
    for name, before, after in rows:
        if found and (found[-1].before, found[-1].after) == (before, after):
            found[-1].names.append(name)
        else:
            found.append(Gap(before, after, [name]))
    return found


def place(conn: Connection, pk: int, names: Sequence[str]) -> tuple[dict[str, int], list[Gap]]:
    """Keys for the new labels whose gaps have room, and the gaps that do not (``settle`` them
    once the others are written)."""
    first, last = band(pk)
    keys: dict[str, int] = {}
    crowded: list[Gap] = []
    for gap in gaps(conn, pk, names):
        got = _keys_in_gap(gap, first, last)
        if got is None:
            crowded.append(gap)
        else:
            keys.update(zip(gap.names, got, strict=True))
    return keys, crowded


def settle(conn: Connection, pk: int, gap: Gap) -> dict[str, int]:
    """Keys for the labels of a gap that had no room, after renumbering rows around it. The
    gap's neighbours are read again: rows written or moved since may have changed them."""
    first, last = band(pk)
    keys: dict[str, int] = {}
    for fresh in gaps(conn, pk, gap.names):
        got = _keys_in_gap(fresh, first, last)
        if got is None:
            got = _renumber(conn, fresh, first, last)
        keys.update(zip(fresh.names, got, strict=True))
    return keys
