"""PostgreSQL URLs on every command that takes ``--storage``: each failure is one sentence.

Runs against the real throwaway server (tests/pgserver.py); the unreachable cases point at a
socket folder where no server listens and at a closed TCP port on 127.0.0.1.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap

import pytest
from tiny import TINY as RECIPE

from edgeexplore.cli import main
from edgeexplore.store import db

pytestmark = pytest.mark.postgres



def commands(tmp_path) -> list[list[str]]:
    """Every command with a ``--storage`` option, with arguments that need the store at once."""
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(RECIPE)
    return [
        ["studies"], ["trials", "list"], ["trials", "show", "1"], ["trials", "export"],
        ["pareto", "--study", "tiny"], ["ablation-show", "t"],
        ["ablate", "local-agg", "--quick", "--backend", "none", "--seeds", "1"],
        ["search", str(recipe), "--budget", "1", "--quiet"],
        ["measure", "edgevit_xxs", "--resolution", "32"],
        ["workers", "tiny"], ["store", "version"], ["store", "upgrade"],
        ["train", "trial:tiny/0", "--data", "synthetic", "-o", str(tmp_path / "full")],
    ]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _one_sentence(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("Error: ") and "\n" not in err and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("where", ["socket", "port"])
def test_unreachable_server_is_one_sentence(tmp_path, capsys, where):
    url = (f"postgresql+psycopg://me@/db?host={tmp_path}" if where == "socket"
           else f"postgresql+psycopg://me:s3cret@127.0.0.1:{_closed_port()}/db")
    for args in commands(tmp_path):
        assert main([*args, "--storage", url]) == 1, args
        err = _one_sentence(capsys)
        assert "cannot reach the database server" in err and "s3cret" not in err, (args, err)


def test_bad_urls_are_one_sentence(tmp_path, capsys):
    for url, expected in [
        ("postgresql+psycopg://me:s3cret@host:notaport/db", "is not a database URL"),
        ("postgres://me@host/db", "names no database SQLAlchemy knows"),
    ]:
        for args in commands(tmp_path):
            assert main([*args, "--storage", url]) == 1, args
            err = _one_sentence(capsys)
            assert expected in err and "s3cret" not in err, (args, err)


def test_missing_database_is_one_sentence(tmp_path, capsys, pg_server):
    url = pg_server.url("no_such_database")
    for args in commands(tmp_path):
        assert main([*args, "--storage", url]) == 1, args
        assert "database 'no_such_database' does not exist" in _one_sentence(capsys), args


@pytest.fixture
def password_role(pg_server):
    """A role that must log in with a password (scram-sha-256), on the trust-only test server.

    pg_hba.conf is read first line first, so one line on top asks this role alone for its
    password; every other connection of the session keeps trust.
    """
    role, password = "pw_user", "right-pw"
    pg_server._run("psql", "-h", str(pg_server.socket_dir), "-U", pg_server.user, "-d",
                   "postgres", "-c", f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    hba = pg_server.root / "data" / "pg_hba.conf"
    hba.write_text(f"local all {role} scram-sha-256\n" + hba.read_text())
    pg_server._run("pg_ctl", "-D", str(pg_server.root / "data"), "reload")
    db_url = pg_server.create_database()
    database = db_url.split("@/")[1].split("?")[0]
    pg_server._run("psql", "-h", str(pg_server.socket_dir), "-U", pg_server.user, "-d",
                   database, "-c", f"ALTER DATABASE {database} OWNER TO {role}; "
                   f"GRANT ALL ON SCHEMA public TO {role}")
    return f"postgresql+psycopg://{role}:{{}}@/{database}?host={pg_server.socket_dir}", password


def test_wrong_password_is_one_sentence(tmp_path, capsys, password_role):
    template, password = password_role
    for args in commands(tmp_path):
        assert main([*args, "--storage", template.format("wrong-pw")]) == 1, args
        err = _one_sentence(capsys)
        assert "refused the login for user 'pw_user'" in err, (args, err)
        assert "wrong-pw" not in err and "***" in err, err
    # the right password opens it: a writer creates the store, a reader then lists it
    db.open_store(template.format(password))
    assert main(["studies", "--storage", template.format(password)]) == 0
    assert "holds no trials" in capsys.readouterr().out


def test_missing_psycopg_names_the_extra():
    # the import fails exactly as on a machine without psycopg installed
    code = textwrap.dedent("""
        import sys
        sys.modules["psycopg"] = None
        from edgeexplore.cli import main
        sys.exit(main(["studies", "--storage", "postgresql+psycopg://me:s3cret@host/db"]))
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert res.returncode == 1
    err = res.stderr.strip()
    assert "\n" not in err and "pip install 'edgeexplore[postgres]'" in err, err
    assert "s3cret" not in err
