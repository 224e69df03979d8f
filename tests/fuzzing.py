"""Contract fuzzing with schemathesis against the app's own ``/openapi.json``.

Each operation is fuzzed on a freshly seeded database (a program with labels and assets, HAR
registries of both package kinds with artifacts, spare programs and keys to delete). Generated
values are mixed with seeded ones - a path parameter, ``program-id`` or ``space_ref`` is replaced
by a real one about half the time, in either HAR path form - so the cases reach the handlers and
the database instead of stopping at the first 404. Every case runs with a valid admin key; the
auth rules themselves are the auth matrix's job (``tests/test_auth_matrix.py``).

Checks on every response: no 5xx, the status is one the document lists for the operation, the
body matches the documented schema for that status.
"""

from __future__ import annotations

import asyncio
import os
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from schemathesis.checks import (
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]
# Examples per operation and generation mode; the long run sets LABELHUB_FUZZ_EXAMPLES.
EXAMPLES = int(os.environ.get("LABELHUB_FUZZ_EXAMPLES", "25"))
SEED = int(os.environ.get("LABELHUB_FUZZ_SEED", "20261123"))

HAR = "/har/api/v1"
REGISTRIES = {"acct/models": "HUGGINGFACE", "acct/org/generic": "GENERIC"}
ARTIFACTS = ["bert", "org/llama", "data set"]
SPARE_REGISTRIES = ["acct/spare1", "acct/org/spare2"]


def _ref_forms(ref: str) -> list[str]:
    """Both wire spellings of a HAR ref or artifact name as a path parameter value, ready to
    put in the URL (schemathesis quotes what it generates, not what is put in afterwards)."""
    quoted = quote(ref, safe="")
    return [quoted, f"{ref}/+"] if "/" in ref else [quoted]


@dataclass
class Seeded:
    """What the seeding made, to draw real values from."""

    admin_key: str
    admin_key_id: int
    key_ids: list[int]
    programs: list[str] = field(default_factory=lambda: ["shop", "spare-a", "spare-b"])

    def path_values(self, name: str) -> list[str]:
        if name in ("registry_ref",):
            refs = [*REGISTRIES, *SPARE_REGISTRIES]
            return [form for ref in refs for form in _ref_forms(ref)]
        if name == "space_ref":
            return [form for space in ("acct", "acct/org") for form in _ref_forms(space)]
        if name == "artifact":
            return [form for name in ARTIFACTS for form in _ref_forms(name)]
        if name == "label":
            return ["red", "blue", "gone"]
        if name == "asset_id":
            return ["a1", "a2", "a3"]
        if name == "user_id":
            return ["u1", "u2", "nobody"]
        if name == "program_id":
            return self.programs[1:]
        if name == "key_id":
            return [str(k) for k in self.key_ids]
        return []


def seed(app: FastAPI, admin_key: str, admin_key_id: int) -> Seeded:
    transport = httpx.ASGITransport(app=app)

    async def run() -> Seeded:
        async with httpx.AsyncClient(transport=transport, base_url="http://labelhub.test") as http:
            return await seed_http(http, admin_key, admin_key_id)

    return asyncio.run(run())


async def seed_http(http: httpx.AsyncClient, admin_key: str, admin_key_id: int) -> Seeded:
    admin = {"x-api-key": admin_key}

    def ok(response: httpx.Response) -> Any:
        assert response.status_code in (200, 201), response.text
        return response.json()

    key_ids = [
        ok(
            await http.post(
                "/admin/keys",
                json={"name": f"spare{i}", "grants": [{"scope": "program:shop", "role": "read"}]},
                headers=admin,
            )
        )["id"]
        for i in range(3)
    ]
    seeded = Seeded(admin_key, admin_key_id, key_ids)
    for program in seeded.programs:
        ok(await http.post("/admin/programs", json={"program_id": program}, headers=admin))
    ah = {"actionhub-key": admin_key, "program-id": "shop"}
    labels = [{"label": n, "weight": w} for n, w in [("red", 1.5), ("blue", -2), ("gone", 0)]]
    ok(await http.put("/labels", json={"labels": labels}, headers=ah))
    assets = [
        {"asset_id": f"a{i}", "asset_name": f"Asset {i}", "labels": ["red", "blue"][:i]}
        for i in range(1, 4)
    ]
    ok(await http.post("/assets", json={"assets": assets}, headers=ah))
    events = [
        {
            "user_id": f"u{u}",
            "event_timestamp": f"2026-11-0{i + 1}T12:00:00Z",
            "event_type": "view",
            "asset_id": f"a{(u + i) % 3 + 1}",
            "labels": ["red"],
        }
        for u in (1, 2)
        for i in range(3)
    ]
    ok(await http.post("/events", json={"events": events}, headers=ah))
    for ref, package_type in {**REGISTRIES, **dict.fromkeys(SPARE_REGISTRIES, "GENERIC")}.items():
        space, _, identifier = ref.rpartition("/")
        body = {
            "identifier": identifier,
            "packageType": package_type,
            "config": {"type": "VIRTUAL"},
            "labels": ["team"],
        }
        ok(
            await http.post(
                f"{HAR}/registry", params={"space_ref": space}, json=body, headers=admin
            )
        )
        for name in ARTIFACTS:
            extra = {"artifactType": "model"} if package_type == "HUGGINGFACE" else {}
            body = {"name": name, "labels": ["prod", name.split("/")[0]], **extra}
            quoted = ref.replace("/", "%2F")
            ok(await http.post(f"{HAR}/registry/{quoted}/artifacts", json=body, headers=admin))
    return seeded


@dataclass
class Outcome:
    examples: int = 0
    statuses: Counter[int] = field(default_factory=Counter)


def _mix(draw: Any, case: Any, seeded: Seeded) -> None:
    """Replace some generated values by seeded ones (three times in four), in place."""

    def often() -> bool:
        return bool(draw(st.sampled_from([True, True, True, False])))

    for name in list(case.path_parameters or {}):
        values = seeded.path_values(name)
        if values and often():
            case.path_parameters[name] = draw(st.sampled_from(values))
    if str((case.path_parameters or {}).get("key_id")) == str(seeded.admin_key_id):
        case.path_parameters["key_id"] = seeded.key_ids[0]  # the fuzzer's own key stays
    if isinstance(case.body, dict) and isinstance(case.body.get("grants"), list) and often():
        case.body["grants"] = [{"scope": "program:shop", "role": "read"}]
    labels = case.body.get("labels") if isinstance(case.body, dict) else None
    if isinstance(labels, list) and all(isinstance(x, str) for x in labels) and often():
        case.body["labels"] = draw(st.lists(st.sampled_from(["prod", "team", "x-y", "ß"])))
    headers = case.headers if case.headers is not None else {}
    if "program-id" in headers and often():
        headers["program-id"] = draw(st.sampled_from(["shop", "spare-a"]))
    if "api-version" in headers and draw(st.booleans()):
        del headers["api-version"]
    query = case.query if case.query is not None else {}
    if "space_ref" in query and draw(st.booleans()):
        query["space_ref"] = draw(st.sampled_from(["acct", "acct/org", "acct/org/proj"]))
    if "artifact_type" in query and draw(st.booleans()):
        del query["artifact_type"]


def fuzz_operation(app: FastAPI, label: str, seeded: Seeded, mode: str) -> Outcome:
    """Run ``EXAMPLES`` generated cases of one operation; an assertion error names the case."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operation = next(
        result.ok() for result in schema.get_all_operations() if result.ok().label == label
    )
    generation_mode = schemathesis.GenerationMode(mode)
    outcome = Outcome()
    auth = {"x-api-key": seeded.admin_key, "actionhub-key": seeded.admin_key}

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=False,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],
        print_blob=True,
    )
    @given(case=operation.as_strategy(generation_mode), data=st.data())
    def run(case: Any, data: st.DataObject) -> None:
        _mix(data.draw, case, seeded)
        headers = {**(case.headers or {}), **auth}
        try:
            response = case.call_and_validate(headers=headers, checks=CHECKS)
        except Exception as error:
            raise AssertionError(f"{case.as_curl_command(headers=headers)}\n{error}") from None
        outcome.examples += 1
        outcome.statuses[response.status_code] += 1

    # A fixed seed per operation and mode: the bounded run is the same run every time.
    seed_of_case(run, f"{SEED}:{label}:{mode}")()
    return outcome


def seed_of_case(test: Any, text: str) -> Any:
    # crc32 of the whole text: the first bytes alone ("2026...") gave every operation one seed.
    return hypothesis_seed(zlib.crc32(text.encode()))(test)


def cases(app: FastAPI) -> Iterator[tuple[str, str]]:
    """(operation, generation mode) pairs; negative cases only where there is input to spoil."""
    for path, operations in app.openapi()["paths"].items():
        for method, operation in operations.items():
            label = f"{method.upper()} {path}"
            yield label, "positive"
            if operation.get("parameters") or operation.get("requestBody"):
                yield label, "negative"
