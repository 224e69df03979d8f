"""Contract fuzzing (schemathesis) of every operation in /openapi.json, on both databases.

The bounded run here uses a fixed seed per operation; ``LABELHUB_FUZZ_EXAMPLES`` raises the
number of examples for the long run (docs/reliability.md).
"""

from __future__ import annotations

import pytest

from labelhub.app import create_app
from labelhub.core import db as dbmod
from labelhub.core import keys
from labelhub.core.config import Settings
from tests import fuzzing

CASES = list(fuzzing.cases(create_app(Settings(database_url="sqlite:///never-opened.db"))))


@pytest.mark.parametrize(("label", "mode"), CASES, ids=[f"{m}-{o}" for o, m in CASES])
def test_operation_keeps_its_contract(
    label: str, mode: str, settings: Settings, database: dbmod.Database
) -> None:
    admin = database.run_write(keys.create_key, "admin", [keys.parse_grant("admin", "admin")])
    app = create_app(settings, database)
    seeded = fuzzing.seed(app, admin.secret, admin.id)
    outcome = fuzzing.fuzz_operation(app, label, seeded, mode)
    print(f"{label} {mode}: {outcome.examples} examples, statuses {dict(outcome.statuses)}")
    assert outcome.examples > 0
