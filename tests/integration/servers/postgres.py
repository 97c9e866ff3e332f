"""A private PostgreSQL 15 for the outbox tests (Debian postgresql-15).

Fixture ``postgres`` (one server per pytest process, shared by modules)::

    def test_x(postgres):
        db = postgres.new_db()            # a fresh database per test
        url = postgres.url(db)            # postgresql:///db?host=DIR&port=N&user=U
        postgres.sql(db, "select 1")      # psql, returns stdout (unaligned, tuples only)

``initdb`` into a temporary directory; ``postgres`` listens on a Unix socket
in that directory only (listen_addresses = ''), never on TCP; the server is
stopped and the directory removed at the end. PostgreSQL refuses to run as
root: as root, the server runs as the ``postgres`` system user (the
directory is given to it). Authentication is ``trust`` for every local user
but ``pwuser``, who needs the password ``right-password`` (scram-sha-256).

``Postgres(fast=False)`` keeps PostgreSQL's durable defaults (fsync, synchronous
commit), for benchmarks; the tests' instance turns them off.
``postgres.stop()`` / ``postgres.start()`` restart the server in place (a
restart under a running worker). Tests are skipped, with the reason, only
when the PostgreSQL binaries are not installed.
"""
import os
import pwd
import subprocess
import time

import pytest

from servers.util import make_tempdir, remove_tree, shared_instance, start_process, stop_process

PGBIN = "/usr/lib/postgresql/15/bin"
PSQL = "/usr/bin/psql"
PORT = 5432  # only names the socket file: the directory is private


def missing():
    """Why the tests cannot run here, or None."""
    for p, pkg in ((f"{PGBIN}/initdb", "postgresql-15"), (f"{PGBIN}/postgres", "postgresql-15"),
                   (PSQL, "postgresql-client-15")):
        if not os.path.exists(p):
            return f"{p} not found: install Debian package {pkg} (scripts/deps.sh test)"
    return None


class Postgres:
    def __init__(self, fast=True):
        self.dir = make_tempdir("pg")
        self.data = os.path.join(self.dir, "data")
        self.log = os.path.join(self.dir, "postgres.log")
        self.proc = None
        self.ndb = 0
        self.as_user = None
        self.user = pwd.getpwuid(os.getuid()).pw_name
        if os.getuid() == 0:
            self.as_user = "postgres"
            self.user = "postgres"
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        self._run([f"{PGBIN}/initdb", "-D", self.data, "-U", self.user, "--auth=trust", "-E", "UTF8",
                   "--no-sync", "--locale=C"])
        with open(os.path.join(self.data, "pg_hba.conf"), "w") as f:
            f.write("local all pwuser scram-sha-256\nlocal all all trust\n")
        with open(os.path.join(self.data, "postgresql.auto.conf"), "a") as f:
            f.write(f"listen_addresses = ''\nunix_socket_directories = '{self.dir}'\nport = {PORT}\n"
                    "max_connections = 200\nlog_min_messages = warning\n")
            if fast:  # tests: no durability needed (bench/bench_pg.py keeps PostgreSQL's defaults)
                f.write("fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n")
        self.start()
        self.sql("postgres", "create role pwuser login superuser password 'right-password'")

    def _argv(self, argv):
        return ["runuser", "-u", self.as_user, "--"] + argv if self.as_user else argv

    def _run(self, argv):
        r = subprocess.run(self._argv(argv), capture_output=True, timeout=120)
        if r.returncode:
            raise RuntimeError(f"{argv[0]} failed ({r.returncode}): {r.stdout.decode()} {r.stderr.decode()}")

    def start(self):
        self.proc = start_process(self._argv([f"{PGBIN}/postgres", "-D", self.data]), log=self.log)
        deadline = time.monotonic() + 60
        while True:
            r = subprocess.run(["pg_isready", "-q", "-h", self.dir, "-p", str(PORT), "-U", self.user],
                               capture_output=True)
            if r.returncode == 0:
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                with open(self.log, errors="replace") as f:
                    raise RuntimeError(f"postgres did not start: {f.read()[-3000:]}")
            time.sleep(0.05)

    def stop(self):
        # SIGINT: fast shutdown (clients disconnected, no wait for them)
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, 2)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                pass
        stop_process(self.proc)
        self.proc = None

    def url(self, db, user=None, password=None):
        u = f"postgresql:///{db}?host={self.dir}&port={PORT}&user={user or self.user}"
        return u + (f"&password={password}" if password else "")

    def new_db(self):
        self.ndb += 1
        name = f"t{os.getpid()}_{self.ndb}"
        self.sql("postgres", f"create database {name}")
        return name

    def sql(self, db, text, check=True, user=None):
        """Runs text with psql (ON_ERROR_STOP); stdout, unaligned, tuples only."""
        r = subprocess.run([PSQL, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", self.dir,
                            "-p", str(PORT), "-U", user or self.user, "-d", db, "-c", text],
                           capture_output=True, timeout=120)
        if check and r.returncode:
            raise RuntimeError(f"psql failed: {r.stderr.decode()}")
        return r.stdout.decode() if check else r

    def close(self):
        self.stop()
        remove_tree(self.dir)


@pytest.fixture(scope="session")
def postgres():
    why = missing()
    if why:
        pytest.skip(why)
    with shared_instance("postgres", Postgres, Postgres.close) as pg:
        yield pg

