"""A throwaway PostgreSQL server for the tests: initdb + pg_ctl on a temporary data directory.

The server listens on a Unix socket in its own directory only (no TCP port to collide with
another run), trusts local connections, and is stopped and deleted at the end of the session.
As root, PostgreSQL refuses to run, so its programs run as the ``postgres`` user through
``runuser`` and the directory is handed to that user.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path


def bindir() -> Path | None:
    """Folder of PostgreSQL's programs (``pg_config --bindir``), or None where there are none."""
    pg_config = shutil.which("pg_config")
    candidates = []
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if out.returncode == 0:
            candidates.append(Path(out.stdout.strip()))
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for c in candidates:
        if (c / "initdb").exists() and (c / "pg_ctl").exists():
            return c
    return None


@dataclass
class PgServer:
    root: Path
    bindir: Path
    user: str

    @property
    def socket_dir(self) -> Path:
        return self.root / "sock"

    def url(self, database: str) -> str:
        """SQLAlchemy URL of ``database`` on this server (psycopg 3, over the Unix socket)."""
        return f"postgresql+psycopg://{self.user}@/{database}?host={self.socket_dir}"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, check=check, cwd=self.root)

    def create_database(self, name: str | None = None) -> str:
        """A new empty database; returns its URL."""
        name = name or f"t_{uuid.uuid4().hex[:12]}"
        self._run("createdb", "-h", str(self.socket_dir), "-U", self.user, name)
        return self.url(name)

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.root / "data"), "-m", "immediate", "stop", check=False)
        shutil.rmtree(self.root, ignore_errors=True)


def start() -> PgServer:
    """Start a server on a fresh data directory; raises RuntimeError with initdb's/pg_ctl's text."""
    bins = bindir()
    if bins is None:
        raise FileNotFoundError("no PostgreSQL programs (pg_config --bindir) on this machine")
    root = Path(tempfile.mkdtemp(prefix="edgeexplore-pg-"))
    (root / "sock").mkdir()
    user = "postgres" if os.geteuid() == 0 else os.environ.get("USER", "postgres")
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(root / "sock", "postgres")
    server = PgServer(root, bins, user)
    try:
        server._run("initdb", "-D", str(root / "data"), "-U", user, "--auth=trust",
                    "--no-sync", "-E", "UTF8")
        opts = (f"-c listen_addresses='' -c unix_socket_directories='{root / 'sock'}' "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                "-c max_connections=200")
        server._run("pg_ctl", "-D", str(root / "data"), "-o", opts, "-l", str(root / "log"),
                    "-w", "-t", "60", "start")
    except subprocess.CalledProcessError as e:
        log = (root / "log").read_text() if (root / "log").exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"PostgreSQL did not start: {e.stderr or e.stdout}{log}") from None
    return server
