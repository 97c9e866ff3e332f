"""The default EHLO name (RFC 5321 4.1.4: the client's FQDN, else an address
literal) is the same for the session, the CLI and the bulk driver. Each runs
in its own UTS namespace (unshare -u, as root) with a host name chosen here:
a dotted name is sent as is; "localhost..." is not a usable name, so the
literal of our end of the connection goes instead ("localhost" never does)."""
import os
import shutil
import subprocess

import pytest

from conftest import BUILD_DIR, driver
from servers.aiosmtpd_server import aiosmtpd  # noqa: F401


def can_unshare():
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    return subprocess.run(["unshare", "-u", "hostname", "x.example"], capture_output=True).returncode == 0


pytestmark = pytest.mark.skipif(not can_unshare(), reason="needs root and unshare -u")


def in_host(name, argv, **kw):
    """argv run with the host name `name` (its own UTS namespace)."""
    return subprocess.run(["unshare", "-u", "sh", "-c", 'hostname "$0" && exec "$@"', name, *argv],
                          capture_output=True, timeout=120, **kw)


def via_session(port, name):
    p = in_host(name, [driver("session"), "127.0.0.1", str(port), "--do", "connect,ehlo,quit"])
    assert p.returncode == 0, p.stderr


def via_cli(port, name, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMTPC_")}
    env.update(HOME=str(tmp_path), SMTPC_CONFIG="/dev/null")
    p = in_host(name, [str(BUILD_DIR / "smtpc"), "send", "--server", f"127.0.0.1:{port}", "--tls", "none",
                       "--from", "a@example.org", "--to", "b@example.org", "--text", "x"], env=env)
    assert p.returncode == 0, p.stderr


def via_bulk(port, name):
    p = in_host(name, [driver("bulk"), "127.0.0.1", str(port), "2", "1"])
    assert p.returncode == 0, p.stderr
    assert "DONE" in p.stdout.decode()


# "localhost.localdomain" resolves from /etc/hosts or not at all (no DNS
# wait), and a name starting with "localhost" is never used
@pytest.mark.parametrize("host,sent", [("mta1.example.net", "mta1.example.net"),
                                       ("localhost.localdomain", "[127.0.0.1]")])
@pytest.mark.parametrize("how", ["session", "cli", "bulk"])
def test_default_ehlo_name(aiosmtpd, tmp_path, how, host, sent):
    srv = aiosmtpd()
    if how == "session":
        via_session(srv.port, host)
    elif how == "cli":
        via_cli(srv.port, host, tmp_path)
    else:
        via_bulk(srv.port, host)
    assert srv.ehlo_names and set(srv.ehlo_names) == {sent}, srv.ehlo_names
