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
        ("events",),
    ):
        code, out, _ = cli(*args, "--help")
        assert code == 0 and "Usage:" in out
    for args in (
        ("serve",),
        ("db", "upgrade"),
        ("programs", "create"),
        ("keys", "create"),
        ("keys", "revoke"),
        ("events", "process"),
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


def test_a_database_upgraded_by_a_newer_labelhub_is_refused_in_one_line(cli) -> None:  # type: ignore[no-untyped-def]
    """A schema revision this labelhub does not know (a newer one migrated the database): every
    command stops with one clear line and exit 1, not a traceback, and changes nothing."""
    code, _, _ = cli("db", "upgrade")
    assert code == 0
    database = dbmod.Database(Settings(database_url=cli.url))
    try:
        with database.engine.begin() as conn:
            conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    finally:
        database.close()
    for command in (("db", "upgrade"), ("programs", "list")):
        code, _, err = cli(*command)
        assert code == 1
        assert one_line(err) == (
            "labelhub: error: The database is at schema revision 9999, which this labelhub does "
            f"not know (its newest is {dbmod.head_revision()}): a newer labelhub upgraded it; "
            "run that one"
        )
    database = dbmod.Database(Settings(database_url=cli.url))
    try:
        with database.engine.connect() as conn:
            assert dbmod.current_revision(conn) == "9999"
    finally:
        database.close()


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


def _labels_in(url: str, program: str) -> dict[str, float]:
    from labelhub.actionhub import store

    db = dbmod.Database(Settings(database_url=url))
    try:

        def read(conn):  # type: ignore[no-untyped-def]
            pk = store.program_pk(conn, program)
            items, total = store.list_labels(conn, pk, None, 1, 10**6)
            assert total == len(items)
            return dict(items)

        return db.run_read(read)
    finally:
        db.close()


def test_labels_import_csv_and_jsonl(cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert cli("programs", "create", "shop")[0] == 0
    csv_file = tmp_path / "labels.csv"
    csv_file.write_text('label,weight\nsale,1.5\n"a,b",-2\n\nsale,3\nünï,1e3\n')
    code, _, err = cli("labels", "import", str(csv_file), "--program", "shop")
    assert code == 0
    assert (
        one_line(err) == "labelhub: imported 3 labels into shop (3 created, 0 updated)"
    )  # sale twice: last wins
    jsonl = tmp_path / "more.data"
    jsonl.write_text('{"label": "sale", "weight": 9}\n\n{"label": "new", "weight": "0.5"}\n')
    code, _, err = cli("labels", "import", str(jsonl), "--program", "shop")
    assert code == 0 and one_line(err).endswith("(1 created, 1 updated)")
    assert _labels_in(cli.url, "shop") == {"sale": 9.0, "a,b": -2.0, "ünï": 1000.0, "new": 0.5}


@pytest.mark.parametrize(
    "content,message",
    [
        ("a,1\nb,2\nc,NaN\nd,4\n", "line 3: weight: Input should be a finite number"),
        ("a,1\nb,2\nc\n", "line 3: expected 2 fields (label,weight), got 1"),
        (
            "a,1\nb,2\n" + "x" * 65 + ",1\n",
            "line 3: label: String should have at most 64 characters",
        ),
        (
            "a,1\nb,2\nc\u0000,1\n",
            "line 3: label: Value error, must not contain control characters (found U+0000)",
        ),
        (
            '{"label": "a", "weight": 1}\n{"label": "b", "weight": 2}\n{"label": "c", "weight": 1\n',
            "line 3: not valid JSON",
        ),
        (
            '{"label": "a", "weight": 1}\n{"label": "b", "weight": 2}\n[1]\n',
            "line 3: expected an object with label and weight",
        ),
    ],
)
def test_labels_import_names_the_bad_line_and_keeps_batches_whole(
    cli, tmp_path, content: str, message: str
) -> None:  # type: ignore[no-untyped-def]
    cli("programs", "create", "shop")
    file = tmp_path / ("in.jsonl" if content.startswith("{") else "in.csv")
    file.write_text(content)
    # Batches of 2: lines 1-2 commit, the batch holding line 3 is refused whole.
    code, _, err = cli("labels", "import", str(file), "--program", "shop", "--batch-size", "2")
    assert code == 1
    line = one_line(err)
    assert line.startswith(f"labelhub: error: {message}")
    assert line.endswith("nothing of its batch was written (2 labels from earlier batches were)")
    assert _labels_in(cli.url, "shop") == {"a": 1.0, "b": 2.0}


def test_labels_import_errors(cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    file = tmp_path / "x.csv"
    file.write_text("a,1\n")
    code, _, err = cli("labels", "import", str(file), "--program", "ghost")
    assert code == 1 and one_line(err) == "labelhub: error: Program 'ghost' not found"
    code, _, err = cli("labels", "import", str(tmp_path / "missing.csv"), "--program", "ghost")
    assert code == 2 and one_line(err).endswith("no such file")
    code, _, err = cli("labels", "import", str(file))
    assert code == 2 and "--program" in one_line(err)
    latin = tmp_path / "latin.csv"
    latin.write_bytes("caf\xe9,1\n".encode("latin-1"))
    cli("programs", "create", "p")
    code, _, err = cli("labels", "import", str(latin), "--program", "p")
    assert code == 1 and "not UTF-8" in one_line(err)


def test_har_commands(cli) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = cli(
        "har",
        "create-registry",
        "acct/org",
        "models",
        "--package-type",
        "HUGGINGFACE",
        "--label",
        "b",
        "--label",
        "a",
    )
    assert code == 0 and out.startswith("acct/org/models\tHUGGINGFACE\t")
    code, _, err = cli("har", "create-registry", "acct/other", "models", "--package-type", "NPM")
    assert (
        code == 1
        and one_line(err) == "labelhub: error: Registry 'models' already exists in space 'acct/org'"
    )
    code, _, err = cli("har", "create-registry", "acct", "Bad_Name", "--package-type", "NPM")
    assert code == 2 and one_line(err).startswith("labelhub: error: identifier:")
    code, _, err = cli("har", "create-registry", "acct", "ok", "--package-type", "NOPE")
    assert code == 2 and one_line(err).startswith("labelhub: error: packageType:")
    code, out, _ = cli("har", "registries", "acct")
    assert code == 0 and out == "acct/org/models\tHUGGINGFACE\ta,b\n"
    code, out, _ = cli(
        "har",
        "register-artifact",
        "acct/org/models",
        "org/bert",
        "--type",
        "model",
        "--label",
        "nlp",
    )
    assert code == 0 and out.startswith("org/bert\tmodel\tnlp\t")
    code, _, err = cli("har", "register-artifact", "acct/org/models", "org/bert", "--type", "model")
    assert code == 1 and "already exists" in one_line(err)
    code, _, err = cli("har", "register-artifact", "acct/org/models", "gpt")
    assert (
        code == 1
        and one_line(err)
        == "labelhub: error: artifactType (model or dataset) is required in a HUGGINGFACE registry"
    )
    code, _, err = cli("har", "register-artifact", "acct/nope", "gpt")
    assert code == 1 and one_line(err) == "labelhub: error: Registry not found"
    code, _, err = cli("har", "register-artifact", "justone", "gpt")
    assert code == 2 and one_line(err).startswith("labelhub: error: Cannot parse registry_ref")


def test_events_process_folds_pending_events_and_refreshes_every_pool(cli) -> None:  # type: ignore[no-untyped-def]
    from labelhub.actionhub import recommender, store

    assert cli("programs", "create", "shop", "--half-life-days", "7")[0] == 0
    db = dbmod.Database(Settings(database_url=cli.url))
    try:
        pk = db.run_read(store.program_pk, "shop")
        events = [
            store.EventIn(f"u{u}", 1_767_225_600_000 + step * 3_600_000, "view", f"a{step}", [])
            for u in range(250)
            for step in range(1 + u % 3)
        ]
        db.run_write(store.record_events, pk, events, False, False)
        assert db.run_read(recommender.pending_users, pk) == 250
        assert db.run_read(recommender.half_life, pk) == 7 * 24 * 3600 * 1000

        code, _, err = cli("events", "process", "--program", "shop", "--batch-size", "100")
        assert code == 0, err
        assert "250 users" in one_line(err)
        assert db.run_read(recommender.pending_users, pk) == 0
        unpooled = db.run_read(
            lambda conn: conn.exec_driver_sql(
                "SELECT count(*) FROM ah_users WHERE pool IS NULL"
            ).scalar_one()
        )
        assert unpooled == 0
        # u0 took a0 only; users who took a0 went on to a1: it is u0's best untaken action.
        found = db.run_read(recommender.recommend, pk, "u0", 1, False)
        assert [(a.event_type, a.asset_id) for a in found.actions] == [("view", "a1")]
    finally:
        db.close()
    code, _, err = cli("events", "process", "--program", "nope")
    assert code == 1 and one_line(err) == "labelhub: error: Program 'nope' not found"
