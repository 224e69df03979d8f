"""The CLI works directly on the configured database: exit codes 0/1/2, one-line errors."""

from __future__ import annotations

import subprocess

import pytest

from labelhub.cli import main
from labelhub.core import db as dbmod
from labelhub.core import keys
from labelhub.core.config import Settings
from tests.conftest import DatabaseFactory
from tests.live import clean_env, labelhub_executable


@pytest.fixture
def cli(
    databases: DatabaseFactory, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):  # type: ignore[no-untyped-def]
    """Run ``labelhub ARGS`` in-process against a fresh (unmigrated) database."""
    url = databases.empty()
    for name in ("LABELHUB_ADMIN_KEY",):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LABELHUB_DATABASE_URL", url)

    def run(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    run.url = url  # type: ignore[attr-defined]
    return run


def one_line(err: str) -> str:
    err = err.strip()
    assert err and "\n" not in err, err
    return err


def test_programs(cli) -> None:  # type: ignore[no-untyped-def]
    assert cli("programs", "create", "shop", "--name", "Shop") == (0, "shop\tShop\n", "")
    code, out, err = cli("programs", "create", "shop")
    assert code == 1 and one_line(err) == "labelhub: error: Program 'shop' already exists"
    cli("programs", "create", "blog")
    code, out, _ = cli("programs", "list")
    assert code == 0 and [line.split("\t")[0] for line in out.splitlines()] == ["blog", "shop"]
    assert cli("programs", "delete", "blog")[0] == 0
    code, _, err = cli("programs", "delete", "blog")
    assert code == 1 and one_line(err) == "labelhub: error: Program not found"
    code, _, err = cli("programs", "create", "x" * 65)
    assert code == 2 and one_line(err).startswith("labelhub: error: PROGRAM_ID")


def test_keys(cli) -> None:  # type: ignore[no-untyped-def]
    code, out, err = cli(
        "keys", "create", "ci", "--grant", "program:shop=write", "--grant", "space:acct=view"
    )
    assert code == 0
    secret = out.strip()
    assert keys.looks_like_key(secret)
    assert secret not in err and one_line(err).startswith("labelhub: created key 1")

    db = dbmod.Database(Settings(database_url=cli.url))
    try:
        principal = db.run_read(keys.authenticate, secret)
        assert principal is not None and principal.may_write_program("shop")
        assert principal.may_view_space("acct/x") and not principal.is_admin
    finally:
        db.close()

    code, out, _ = cli("keys", "list")
    assert code == 0 and secret not in out
    fields = out.strip().split("\t")
    assert fields[:4] == ["1", secret[:11], "ci", "program:shop=write,space:acct=view"]
    assert fields[-1] == "active"

    assert cli("keys", "revoke", "1")[0] == 0
    assert cli("keys", "list")[1].strip().split("\t")[-1].startswith("revoked ")
    code, _, err = cli("keys", "revoke", "42")
    assert code == 1 and one_line(err) == "labelhub: error: Key not found"

    assert cli("keys", "create", "root", "--grant", "admin")[0] == 0


@pytest.mark.parametrize(
    "args",
    [
        ("keys", "create", "x", "--grant", "program:shop=view"),
        ("keys", "create", "x", "--grant", "bogus"),
        ("keys", "create", "x"),
        ("keys", "revoke", "abc"),
        ("programs", "create"),
        ("programs", "frobnicate"),
        ("serve", "--port", "-1"),
        ("--no-such-flag",),
    ],
)
def test_usage_errors_exit_2_with_one_line(cli, args: tuple[str, ...]) -> None:  # type: ignore[no-untyped-def]
    code, _, err = cli(*args)
    assert code == 2
    assert one_line(err).startswith("labelhub: error: ")


def test_help_on_every_command(cli) -> None:  # type: ignore[no-untyped-def]
    for args in (
        (),
        ("db",),
        ("programs",),
        ("keys",),
    ):
        code, out, _ = cli(*args, "--help")
        assert code == 0 and "Usage:" in out
    for args in (
        ("serve",),
        ("db", "upgrade"),
        ("programs", "create"),
        ("keys", "create"),
        ("keys", "revoke"),
    ):
        code, out, _ = cli(*args, "--help")
        assert code == 0 and "Usage: labelhub" in out


def test_db_upgrade(cli) -> None:  # type: ignore[no-untyped-def]
    code, _, err = cli("db", "upgrade")
    assert code == 0 and one_line(err).endswith(f"at revision {dbmod.head_revision()}")


def test_bad_configuration_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LABELHUB_DATABASE_URL", "redis://localhost")
    assert main(["programs", "list"]) == 2
    assert one_line(capsys.readouterr().err).startswith("labelhub: error: LABELHUB_DATABASE_URL")
    monkeypatch.setenv("LABELHUB_DATABASE_URL", "sqlite://")
    assert main(["programs", "list"]) == 2
    capsys.readouterr()
    monkeypatch.setenv("LABELHUB_DATABASE_URL", "sqlite:///./x.db")
    monkeypatch.setenv("LABELHUB_DB_TIMEOUT", "soon")
    assert main(["programs", "list"]) == 2
    assert one_line(capsys.readouterr().err).startswith("labelhub: error: LABELHUB_DB_TIMEOUT")


def test_unreachable_database_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LABELHUB_DATABASE_URL", "postgresql://postgres@127.0.0.1:1/nothing")
    monkeypatch.setenv("LABELHUB_DB_TIMEOUT", "1")
    assert main(["programs", "list"]) == 1
    err = one_line(capsys.readouterr().err)
    assert err.startswith("labelhub: ")


def test_console_script_exit_codes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = clean_env(LABELHUB_DATABASE_URL=f"sqlite:///{tmp_path / 'cli.db'}")
    exe = labelhub_executable()
    ok = subprocess.run(
        [exe, "programs", "create", "shop"], env=env, capture_output=True, text=True
    )
    assert ok.returncode == 0 and ok.stdout == "shop\tshop\n"
    dup = subprocess.run(
        [exe, "programs", "create", "shop"], env=env, capture_output=True, text=True
    )
    assert dup.returncode == 1 and dup.stderr == "labelhub: error: Program 'shop' already exists\n"
    bad = subprocess.run([exe, "keys", "revoke"], env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
