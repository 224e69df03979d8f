"""HAR wire shapes (``shared/spec/har.md``): the envelope, registries, artifacts, labels.

Validation failures are answered 400 in the HAR envelope by ``labelhub.app``.
Timestamps (``createdAt``, ``modifiedAt``, ``lastModified``) are epoch milliseconds as strings.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
)

from labelhub.actionhub.schemas import PRINTABLE, STORABLE, printable, storable

PackageType = Literal[
    "DOCKER",
    "MAVEN",
    "PYTHON",
    "GENERIC",
    "HELM",
    "NUGET",
    "NPM",
    "RPM",
    "CARGO",
    "GO",
    "HUGGINGFACE",
]
ArtifactType = Literal["model", "dataset"]
MAX_LABELS = 1_000
IDENTIFIER = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$")


def _label_set(labels: list[str]) -> list[str]:
    """Without duplicates, sorted byte-wise; at most ``MAX_LABELS`` distinct labels."""
    distinct = sorted(set(labels))  # code point order, which is UTF-8's byte order
    if len(distinct) > MAX_LABELS:
        raise ValueError(f"at most {MAX_LABELS} distinct labels, got {len(distinct)}")
    return distinct


def _identifier(value: str) -> str:
    if not IDENTIFIER.fullmatch(value):
        raise ValueError(
            "lowercase letters and digits in runs joined by single '.', '_' or '-', "
            "starting and ending with a letter or digit"
        )
    return value


Label = Annotated[
    str,
    Field(min_length=1, max_length=255, json_schema_extra=PRINTABLE),
    AfterValidator(printable),
]
LabelSet = Annotated[list[Label], AfterValidator(_label_set)]
Identifier = Annotated[
    str,
    Field(min_length=1, max_length=255, json_schema_extra={"pattern": IDENTIFIER.pattern}),
    AfterValidator(_identifier),
]
ArtifactName = Annotated[
    str,
    Field(min_length=1, max_length=1024, json_schema_extra=PRINTABLE),
    AfterValidator(printable),
]

Description = Annotated[
    str, Field(max_length=10_000, json_schema_extra=STORABLE), AfterValidator(storable)
]
Version = Annotated[
    str,
    Field(min_length=1, max_length=255, json_schema_extra=PRINTABLE),
    AfterValidator(printable),
]

T = TypeVar("T")


class Success(BaseModel, Generic[T]):
    status: Literal["SUCCESS"] = "SUCCESS"
    data: T


class StatusOnly(BaseModel):
    status: Literal["SUCCESS"] = "SUCCESS"


class Error(BaseModel):
    code: str = Field(description="The HTTP status code as a string", examples=["404"])
    message: str
    details: dict[str, Any] | None = None


class LabelsBody(BaseModel):
    labels: LabelSet


class RegistryConfig(BaseModel):
    type: Literal["VIRTUAL", "UPSTREAM"]


class RegistryIn(BaseModel):
    identifier: Identifier
    packageType: PackageType
    description: Description | None = None
    labels: LabelSet | None = None
    config: RegistryConfig
    parentRef: str | None = None


class RegistryUpdate(BaseModel):
    identifier: str | None = None
    packageType: PackageType | None = None
    description: Description | None = None
    labels: LabelSet | None = None
    config: RegistryConfig | None = None


class Registry(BaseModel):
    identifier: str
    packageType: PackageType
    description: str
    labels: list[str]
    config: RegistryConfig
    url: str
    createdAt: str
    modifiedAt: str
    uuid: str


class ArtifactIn(BaseModel):
    name: ArtifactName
    artifactType: ArtifactType | None = None
    version: Version | None = None
    labels: LabelSet | None = None


class ArtifactSummary(BaseModel):
    imageName: str
    packageType: PackageType
    artifactType: ArtifactType | None = Field(
        default=None, description="HUGGINGFACE registries only; omitted otherwise"
    )
    labels: list[str]
    downloadsCount: int
    createdAt: str
    modifiedAt: str
    uuid: str
    registryUUID: str


class ArtifactListEntry(BaseModel):
    name: str
    registryIdentifier: str
    packageType: PackageType
    artifactType: ArtifactType | None = Field(
        default=None, description="HUGGINGFACE registries only; omitted otherwise"
    )
    labels: list[str]
    downloadsCount: int
    lastModified: str
    latestVersion: str | None
    uuid: str
    registryUUID: str

    @model_serializer(mode="wrap")
    def _omit_absent_type(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # artifactType is left out for non-HUGGINGFACE registries; latestVersion stays, as null.
        out: dict[str, Any] = handler(self)
        if out.get("artifactType") is None:
            out.pop("artifactType", None)
        return out


class Paged(BaseModel):
    itemCount: int
    pageCount: int
    pageIndex: int
    pageSize: int


class ArtifactList(Paged):
    artifacts: list[ArtifactListEntry]


class LabelList(Paged):
    labels: list[str]


class RegistryListEntry(BaseModel):
    identifier: str
    packageType: PackageType
    type: Literal["VIRTUAL", "UPSTREAM"]
    description: str
    labels: list[str]
    artifactsCount: int
    downloadsCount: int
    lastModified: str
    url: str
    uuid: str


class RegistryList(Paged):
    registries: list[RegistryListEntry]
