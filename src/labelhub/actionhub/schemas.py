"""ActionHub wire shapes (see ``shared/spec/actionhub.md``: Labels, Assets).

Control characters (U+0000-U+001F, U+007F-U+009F) and lone surrogates (which JSON escapes can
carry but no database can store) are refused in every name with a 422, never a 500.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field

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


LabelName = Annotated[
    str,
    Field(min_length=1, max_length=64, json_schema_extra=PRINTABLE),
    AfterValidator(_no_control_characters),
]
AssetId = Annotated[
    str,
    Field(min_length=1, max_length=64, json_schema_extra=PRINTABLE),
    AfterValidator(_no_control_characters),
]
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
