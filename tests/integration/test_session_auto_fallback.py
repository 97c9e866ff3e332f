"""TLS mode auto (issue 14, item 11): implicit TLS first, plaintext only when
the port does not speak TLS (its first bytes are not a TLS record: a
plaintext greeting; or it closed before sending anything). A server that
answered with TLS and then failed (an alert, a bad record, a version
nobody accepts, a certificate that does not verify) is a TLS failure: no
second connection in plaintext. The decision is by what the peer sent, not
by words in the error message."""
import struct
import subprocess

import pytest

from conftest import driver
from servers.aiosmtpd_server import aiosmtpd  # noqa: F401
from servers.scripted import scripted  # noqa: F401
from servers.stunnel import stunnel_in_front_of  # noqa: F401


def run(port, *args):
    r = subprocess.run([driver("secure"), "127.0.0.1", str(port), "--mode", "auto", "--auto-ms", "5000",
                        "--command-timeout-ms", "10000", *args], capture_output=True, timeout=60)
    out = r.stdout.decode(errors="replace")
    rc = next((line.split()[1][3:] for line in out.splitlines() if line.startswith("open rc=")), None)
    err = next((line[4:] for line in out.splitlines() if line.startswith("err ")), "")
    return rc, err, out


def record(ctype, body, version=b"\x03\x03"):
    return bytes([ctype]) + version + struct.pack(">H", len(body)) + body


def server_hello(version):
    body = version + b"\x11" * 32 + b"\x00" + b"\x00\x2f" + b"\x00"
    return record(22, b"\x02" + struct.pack(">I", len(body))[1:] + body)


SPOKE_TLS = {
    # a fatal handshake_failure alert
    "alert": record(21, b"\x02\x28"),
    # a handshake record whose message is garbage
    "bad record": record(22, b"\x63hello, not a handshake message"),
    # a ServerHello for SSL 3.0, which nobody accepts any more
    "wrong version": server_hello(b"\x03\x00"),
    # application data before any handshake
    "unexpected record": record(23, b"\x00" * 32),
}


@pytest.mark.parametrize("case", sorted(SPOKE_TLS))
def test_tls_failure_does_not_fall_back(scripted, case):
    srv = scripted([("send", SPOKE_TLS[case]), ("hang",)], connections=2)
    rc, err, out = run(srv.port)
    assert rc == "SMTPC_ETLS", out
    assert "plaintext" not in err and "trying plaintext" not in out, out
    assert srv.connections == 1


def test_certificate_failure_does_not_fall_back(stunnel_in_front_of, aiosmtpd):
    srv = aiosmtpd()
    tls = stunnel_in_front_of(srv.port, cert="unknown_ca")
    rc, err, out = run(tls.port)
    assert rc == "SMTPC_ETLS" and "certificate" in err, out
    assert "trying plaintext" not in out, out
    # and with the right CA it is implicit TLS
    tls = stunnel_in_front_of(srv.port)
    rc, err, out = run(tls.port, "--ca", tls.ca_file)
    assert rc == "SMTPC_OK" and "security implicit" in out, out


def test_close_before_any_tls_record_falls_back(scripted):
    # nothing at all came: not a TLS port (as far as can be told): plaintext next
    srv = scripted([("close",)], connections=2)
    rc, err, out = run(srv.port)
    assert rc != "SMTPC_OK"
    assert "trying plaintext" in out and "plaintext:" in err, out
    srv.wait()
    assert srv.connections == 2
