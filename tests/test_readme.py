"""The README's two commands are the ones CI runs, and what it documents exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def shell_blocks(text: str) -> list[str]:
    return [b.strip() for b in re.findall(r"```sh\n(.*?)```", text, flags=re.S)]


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    blocks = shell_blocks(readme)
    start, test = blocks[0], blocks[2]
    assert start.endswith("&& labelhub serve")
    assert test.endswith("&& pytest")
    match = re.search(r'^TEST_COMMAND="(.*)"$', ci, flags=re.M)
    assert match is not None and match.group(1) == test


def test_readme_documents_every_setting() -> None:
    from labelhub.core.config import Settings

    readme = (ROOT / "README.md").read_text()
    for name in Settings.model_fields:
        assert f"`LABELHUB_{name.upper()}`" in readme, name
