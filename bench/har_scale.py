"""W6: HAR artifact listing filtered by two labels, and the distinct-label listing, on a
registry of 10k, 100k and 1M artifacts.

For each size: a fresh database, one DOCKER registry created through labelhub's store, then N
artifacts ``image-NNNNNNN`` bulk-inserted into labelhub's tables in transactions of 10,000, each
with three labels: an environment (``prod``/``staging``/``dev``, a third each), a team
(``team-0``..``team-99``, 1% each) and a tag (``tag-0``..``tag-9999``, 0.01% each); the registry's
label counts are filled to match. Then ``labelhub serve`` on it and sequential requests over one
keep-alive connection:

| figure | request |
|---|---|
| ``filter_common`` | ``label=prod&label=team-N``: about 0.33% of artifacts, counted in full |
| ``filter_rare`` | ``label=team-N&label=tag-M`` of an existing artifact: a few matches |
| ``filter_one`` | ``label=prod``: a third of the artifacts, newest first, counted in full |
| ``list_first`` | the unfiltered listing, first page (newest first) |
| ``labels_first`` | the distinct-label listing, first page |
| ``labels_search`` | the distinct-label listing, ``search_term=tag-12`` (111 labels) |
| ``labels_deep`` | the distinct-label listing, page 400 of 20 |

    python -m bench.har_scale --db sqlite
    python -m bench.har_scale --db postgresql --pg-url postgresql://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import random
import time
import uuid
from collections import Counter
from typing import Any

from sqlalchemy import insert, update

from bench.common import Request, prepared, scale_main, settle
from labelhub.core.models import Artifact, ArtifactLabel, Registry, RegistryLabel
from labelhub.har import store

ENVIRONMENTS = ["prod", "staging", "dev"]
PATH = "/har/api/v1/registry/acct%2Fbench"


def labels_of(i: int) -> list[str]:
    rng = random.Random(i)
    return [ENVIRONMENTS[i % 3], f"team-{rng.randrange(100)}", f"tag-{rng.randrange(10_000)}"]


def load(url: str, size: int, admin: str) -> float:
    started = time.perf_counter()
    db = prepared(url, admin)
    try:
        registry = db.run_write(store.create_registry, "acct", "bench", "DOCKER", "", [])
        counts: Counter[str] = Counter()
        base = int(time.time() * 1000)
        for start in range(0, size, 10_000):
            chunk = range(start, min(size, start + 10_000))

            def work(conn: Any, chunk: range = chunk) -> None:
                ids: list[int] = (
                    conn.execute(
                        insert(Artifact).returning(Artifact.id, sort_by_parameter_order=True),
                        [
                            {
                                "uuid": str(uuid.UUID(int=i + 1)),
                                "registry_id": registry.id,
                                "name": f"image-{i:07d}",
                                "name_folded": f"image-{i:07d}",
                                "artifact_type": "",
                                "latest_version": "1.0",
                                "downloads_count": i % 1000,
                                "created_at": base + i,
                                "modified_at": base + i,
                            }
                            for i in chunk
                        ],
                    )
                    .scalars()
                    .all()
                )
                rows = []
                for artifact_id, i in zip(ids, chunk, strict=True):
                    for label in labels_of(i):
                        rows.append(
                            {"artifact_id": artifact_id, "label": label, "registry_id": registry.id}
                        )
                        counts[label] += 1
                conn.execute(insert(ArtifactLabel), rows)
                store.fill_search_labels(conn, ids)

            db.run_write(work)

        def totals(conn: Any) -> None:
            conn.execute(
                insert(RegistryLabel),
                [
                    {
                        "registry_id": registry.id,
                        "label": label,
                        "label_folded": label.casefold(),
                        "artifacts": n,
                    }
                    for label, n in counts.items()
                ],
            )

        db.run_write(totals)

        def artifact_count(conn: Any) -> None:
            conn.execute(
                update(Registry).where(Registry.id == registry.id).values(artifact_count=size)
            )

        db.run_write(artifact_count)
        settle(db)
    finally:
        db.close()
    return time.perf_counter() - started


def workloads(size: int) -> dict[str, list[Request]]:
    rng = random.Random(11)
    rare = []
    for _ in range(50):
        _, team, tag = labels_of(rng.randrange(size))
        rare.append((f"{PATH}/artifacts", {"label": [team, tag]}))
    return {
        "filter_common": [
            (f"{PATH}/artifacts", {"label": ["prod", f"team-{rng.randrange(100)}"]})
            for _ in range(50)
        ],
        "filter_rare": rare,
        "filter_one": [(f"{PATH}/artifacts", {"label": ["prod"]})],
        "list_first": [(f"{PATH}/artifacts", {})],
        "labels_first": [(f"{PATH}/artifact/labels", {})],
        "labels_search": [(f"{PATH}/artifact/labels", {"search_term": "tag-12"})],
        "labels_deep": [(f"{PATH}/artifact/labels", {"page": 400})],
    }


def main() -> None:
    scale_main(__doc__ or "", "har", load, workloads, lambda admin: {"x-api-key": admin}, "label")


if __name__ == "__main__":
    main()
