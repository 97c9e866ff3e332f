"""A build without PostgreSQL support (cmake -DSMTPC_POSTGRESQL=OFF, or no
libpq-dev): a postgresql:// outbox is refused with a clear error and exit
69, and `smtpc --version` says so. Skipped in builds that have it
(test_outbox_pg.py covers those)."""
import re
import subprocess

import pytest

from conftest import BUILD_DIR

SMTPC = str(BUILD_DIR / "smtpc")


def has_pg():
    r = subprocess.run([SMTPC, "--version"], capture_output=True, timeout=30)
    return b"PostgreSQL outbox: yes" in r.stdout


@pytest.mark.skipif(has_pg(), reason="this build has PostgreSQL support")
def test_postgresql_outbox_is_refused_clearly(tmp_path):
    r = subprocess.run([SMTPC, "--version"], capture_output=True, timeout=30)
    assert b"PostgreSQL outbox: no (built without libpq)" in r.stdout
    for args in (["queue", "list"], ["queue", "init"], ["send", "--from", "a@x.org", "--to", "b@x.org", "--text", "x"]):
        r = subprocess.run([SMTPC, *args, "--outbox", f"postgresql:///x?host={tmp_path}"], capture_output=True,
                           timeout=30)
        assert r.returncode == 69, (args, r)  # EX_UNAVAILABLE
        assert re.search(rb"PostgreSQL support is off", r.stderr), r.stderr
