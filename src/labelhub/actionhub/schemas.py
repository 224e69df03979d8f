"""ActionHub wire shapes (see ``shared/spec/actionhub.md``: Labels, Assets, Events).

Control characters (U+0000-U+001F, U+007F-U+009F) and lone surrogates (which JSON escapes can
carry but no database can store) are refused in every name with a 422, never a 500.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, Field

FORBIDDEN = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
# The same rule for the OpenAPI document, so generated clients and fuzzers know it.
PRINTABLE = {"pattern": r"^[^\x00-\x1f\x7f-\x9f\ud800-\udfff]*$"}
# Free text (descriptions) may hold newlines and tabs, but not what no database can store: NUL
# (PostgreSQL refuses it) and lone surrogates (not encodable as UTF-8).
UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")
STORABLE = {"pattern": r"^[^\x00\ud800-\udfff]*$"}


def storable(value: str) -> str:
    found = UNSTORABLE.search(value)
    if found:
        raise ValueError(f"must not contain U+{ord(found.group()):04X}")
    return value


def printable(value: str) -> str:
    return _no_control_characters(value)


MAX_LABELS_PER_PUT = 10_000
MAX_ASSETS_PER_POST = 1_000
MAX_LABELS_PER_ASSET = 1_000


def _no_control_characters(value: str) -> str:
    found = FORBIDDEN.search(value)
    if found:
        raise ValueError(f"must not contain control characters (found U+{ord(found.group()):04X})")
    return value


# A name of 1-64 printable characters: labels, asset ids, user ids, event types.
PrintableName = Annotated[
    str,
    Field(min_length=1, max_length=64, json_schema_extra=PRINTABLE),
    AfterValidator(_no_control_characters),
]
LabelName = PrintableName
AssetId = PrintableName
AssetName = Annotated[
    str, Field(max_length=124, json_schema_extra=PRINTABLE), AfterValidator(_no_control_characters)
]
Weight = Annotated[
    float,
    Field(
        allow_inf_nan=False,
        description="The strength of the action recommendation for the given user. "
        "Higher values mean stronger recommendation.",
    ),
]


class Label(BaseModel):
    label: LabelName
    weight: Weight


class LabelList(BaseModel):
    labels: Annotated[list[Label], Field(max_length=MAX_LABELS_PER_PUT)]


class SuccessMessage(BaseModel):
    result: str


class LabelPage(BaseModel):
    items: list[Label]
    total: int
    page: int
    size: int


class Asset(BaseModel):
    """An asset as sent: fields left out keep their stored value (``model_fields_set``)."""

    asset_id: AssetId
    asset_name: AssetName | None = None
    labels: Annotated[list[LabelName], Field(max_length=MAX_LABELS_PER_ASSET)] = []


class AssetList(BaseModel):
    assets: Annotated[list[Asset], Field(min_length=1, max_length=MAX_ASSETS_PER_POST)]


class AssetOut(BaseModel):
    asset_id: str
    asset_name: str | None
    labels: list[str]


class AssetPage(BaseModel):
    items: list[AssetOut]
    total: int
    page: int
    size: int


class Detail(BaseModel):
    detail: str


# --- events and recommendations -------------------------------------------------------------

MAX_EVENTS_PER_POST = 1_000
MAX_LABELS_PER_EVENT = 1_000
# "2026-11-23T10:00", optionally seconds, fraction and offset: a date and a time, as ISO 8601
# writes them; bare numbers and dates without a time are refused.
ISO_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")


def _date_time_text(value: object) -> object:
    if not isinstance(value, str) or not ISO_DATE_TIME.match(value):
        raise ValueError("must be an ISO 8601 date-time string, e.g. 2026-11-23T10:00:00Z")
    return value


def _in_utc(value: datetime) -> datetime:
    """Naive times are UTC; the instant must be representable in UTC (years 1-9999)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("is outside the years 1 to 9999 in UTC") from None


Timestamp = Annotated[
    datetime,
    BeforeValidator(_date_time_text),
    AfterValidator(_in_utc),
    Field(description="ISO 8601 date-time; without an offset it is UTC. Kept to the millisecond."),
]
UserId = PrintableName
EventType = PrintableName


class Event(BaseModel):
    user_id: UserId
    event_timestamp: Timestamp
    event_type: EventType
    asset_id: AssetId
    labels: Annotated[list[LabelName], Field(max_length=MAX_LABELS_PER_EVENT)] = []


class EventList(BaseModel):
    events: Annotated[list[Event], Field(min_length=1, max_length=MAX_EVENTS_PER_POST)]


class HistoryItem(BaseModel):
    timestamp: datetime
    event_type: str
    asset_id: str
    asset_name: str | None
    event_labels: list[str]
    asset_labels: list[str]


class History(BaseModel):
    history: list[HistoryItem]


class RecommendedAction(BaseModel):
    event_type: str
    asset_id: str
    asset_name: str | None
    growth_weight: float
    base_weight: float


class Actions(BaseModel):
    actions: list[RecommendedAction]
