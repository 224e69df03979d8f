"""W5: GET /labels search and deep pages on programs of 10k, 100k and 1M labels.

For each size: a fresh database, N labels loaded through labelhub's own store (10,000 per
transaction), ``labelhub serve`` started on it, then sequential requests over one keep-alive
connection (latency, not throughput): a rare search (1 match), a medium one (~100 matches), a
common one (~2% of labels), the first page, the middle page and, where it exists, page 10000.
Each figure is the median over ``--runs`` runs of that run's p50/p99; min and max are kept. The
plans PostgreSQL / SQLite choose at the largest size are recorded with the figures.

    python -m bench.search_scale --db sqlite
    python -m bench.search_scale --db postgresql --pg-url postgresql://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import random
import time
from typing import Any

from bench.common import Request, prepared, scale_main, settle
from labelhub.actionhub import store

WORDS = [
    "amber", "azure", "bold", "brisk", "calm", "coral", "crimson", "dawn", "deep", "eager",
    "ember", "fair", "fern", "frost", "gold", "grand", "green", "hazel", "ivory", "jade",
    "keen", "lemon", "lilac", "lunar", "maple", "mint", "misty", "noble", "ocean", "olive",
    "pearl", "pine", "plum", "quiet", "rapid", "royal", "ruby", "rustic", "sage", "sandy",
    "scarlet", "silver", "sky", "snowy", "solar", "spring", "steel", "stone", "storm", "sunny",
]  # fmt: skip
NOUNS = [
    "falcon", "river", "meadow", "harbor", "summit", "canyon", "forest", "island", "valley", "prairie",
    "glacier", "lagoon", "orchard", "bay", "cliff", "dune", "grove", "marsh", "ridge", "spire",
]  # fmt: skip


def label_name(i: int) -> str:
    rng = random.Random(i)
    return f"{rng.choice(WORDS)}-{rng.choice(NOUNS)}-{i:07d}"


def load(url: str, size: int, admin: str) -> float:
    started = time.perf_counter()
    db = prepared(url, admin)
    try:
        db.run_write(store.create_program, "bench")
        pk = db.run_read(store.program_pk, "bench")
        for start in range(0, size, 10_000):
            batch = [(label_name(i), i / 3) for i in range(start, min(size, start + 10_000))]
            db.run_write(store.upsert_labels, pk, batch)
        settle(db)
    finally:
        db.close()
    return time.perf_counter() - started


def workloads(size: int) -> dict[str, list[Request]]:
    rng = random.Random(7)
    middle = size // 2 // 50 + 1
    kinds: dict[str, list[dict[str, Any]]] = {
        "search_rare": [{"search": f"{rng.randrange(size):07d}"} for _ in range(50)],
        "search_medium": [
            {"search": f"{rng.choice(WORDS)}-{rng.choice(NOUNS)}-"} for _ in range(50)
        ],
        "search_common": [{"search": f"{rng.choice(WORDS)}-"} for _ in range(50)],
        "page_first": [{"page": 1}],
        "page_middle": [{"page": max(1, middle + d)} for d in range(-25, 25)],
    }
    if size >= 10_000 * 50:
        kinds["page_10000"] = [{"page": 10_000}]
    return {name: [("/labels", params) for params in plist] for name, plist in kinds.items()}


def main() -> None:
    scale_main(
        __doc__ or "",
        "search",
        load,
        workloads,
        lambda admin: {"actionhub-key": admin, "program-id": "bench"},
        "program_labels",
    )


if __name__ == "__main__":
    main()
