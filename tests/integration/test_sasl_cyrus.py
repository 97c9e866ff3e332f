"""Interoperability of the SASL mechanisms (src/engine/sasl/) with another
implementation: Cyrus SASL's sample server (sasl2-bin) with a private
sasldb, driven line by line through tests/integration/drv_sasl.c."""
import base64
import os
import shutil
import subprocess

import pytest

from conftest import driver
from servers.util import make_tempdir, remove_tree

TIMEOUT = 60
REALM = "test.realm"

pytestmark = pytest.mark.skipif(not shutil.which("sasl-sample-server", path="/usr/sbin:/usr/bin"),
                                reason="sasl2-bin not installed")


@pytest.fixture(scope="module")
def sasldb():
    d = make_tempdir("sasl")
    db = os.path.join(d, "sasldb2")
    subprocess.run(["saslpasswd2", "-f", db, "-c", "-p", "-u", REALM, "user"], input=b"pencil",
                   check=True, timeout=TIMEOUT)
    with open(os.path.join(d, "sample.conf"), "w") as f:
        f.write(f"pwcheck_method: auxprop\nauxprop_plugin: sasldb\nsasldb_path: {db}\n")
    yield d
    remove_tree(d)


def run_exchange(confdir, mech, password):
    """Returns (server_ok, client_lines)."""
    env = dict(os.environ, SASL_CONF_PATH=confdir)
    sample = shutil.which("sasl-sample-server", path="/usr/sbin:/usr/bin")
    srv = subprocess.Popen(["stdbuf", "-oL", sample, "-s", "sample", "-u", REALM, "-m", mech],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, env=env)
    cli = subprocess.Popen([driver("sasl"), mech, "--user", "user", "--pass", password],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    log = []
    try:
        def srv_line():
            while True:
                line = srv.stdout.readline()
                if not line:
                    return None
                log.append("S> " + line.rstrip())
                if line.startswith("Negotiation complete"):
                    return "DONE"
                if line.startswith("S: "):
                    return line[3:].strip()

        def cli_cmd(cmd):
            cli.stdin.write(cmd + "\n")
            cli.stdin.flush()
            r = cli.stdout.readline().split()
            log.append("C> " + " ".join(r))
            if r and r[1].lstrip("-").isdigit() and int(r[1]) < 0:
                log.append("C> " + cli.stdout.readline().rstrip())
            return r

        assert srv_line() is not None  # the mechanism list
        ir = cli.stdout.readline().split()[1]
        raw = mech.encode() + (b"\0" + base64.b64decode(ir) if ir != "-" else b"")
        srv.stdin.write("C: " + base64.b64encode(raw).decode() + "\n")
        srv.stdin.flush()
        while True:
            ch = srv_line()
            if ch is None:
                return False, log
            if ch == "DONE":
                r = cli_cmd("F")
                return r == ["F", "0"], log
            r = cli_cmd("C " + ch)
            if int(r[1]) < 0:
                return False, log
            srv.stdin.write("C: " + ("" if r[2] == "=" else r[2]) + "\n")
            srv.stdin.flush()
    finally:
        for p in (srv, cli):
            try:
                p.stdin.close()
            except OSError:
                pass
            try:
                p.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256"])
def test_mechanism_against_cyrus(sasldb, mech):
    ok, log = run_exchange(sasldb, mech, "pencil")
    assert ok, "\n".join(log)
    if mech.startswith("SCRAM"):
        # mutual authentication happened: the client checked the server's proof
        assert any(line.startswith("C> R 1 ") for line in log), "\n".join(log)


@pytest.mark.parametrize("mech", ["PLAIN", "CRAM-MD5", "SCRAM-SHA-256"])
def test_wrong_password_refused(sasldb, mech):
    ok, log = run_exchange(sasldb, mech, "wrong")
    assert not ok, "\n".join(log)
    assert not any("Negotiation complete" in line for line in log), "\n".join(log)
