"""smtpc_bulk with the connection options (smtpc_conn_opts) and the session's
TLS policy, against real servers: Postfix (STARTTLS offered with several
certificates, plain, client certificate required, TLS 1.2 only), stunnel
(implicit TLS) and aiosmtpd (who connected).

The test ports are not 25 or 465, so DEFAULT means "STARTTLS required" here;
the port-25 case (STARTTLS_OPTIONAL) is tested with that mode set explicitly.
"""
import os
import re
import shutil
import subprocess

from conftest import driver
from servers.aiosmtpd_server import aiosmtpd, free_port  # noqa: F401
from servers.certs import process_certs
from servers.postfix import postfix, postfix_server  # noqa: F401
from servers.stunnel import stunnel_in_front_of  # noqa: F401

# R IDX STATUS CODE ATTEMPTS ERRNAME ERRMSG
RESULT = re.compile(r"^R (\d+) (\S+) \S+ \S+ (\S+) ?(.*)$", re.M)


def run(host, port, count, *opts, env=None, timeout=120):
    """drv_bulk over one connection: {idx: (status, error name, errmsg)}, the DONE line, output."""
    p = subprocess.run([driver("bulk"), host, str(port), str(count), "1", *map(str, opts)],
                       capture_output=True, timeout=timeout, env=dict(os.environ, **(env or {})))
    out = p.stdout.decode()
    assert p.returncode == 0, p.stderr.decode() + out[-2000:]
    assert "DUPLICATE" not in out, out
    res = {int(m[1]): (m[2], m[3], m[4]) for m in RESULT.finditer(out)}
    done = next((ln for ln in out.splitlines() if ln.startswith("DONE")), None)
    return res, done, out


def opts(*more):
    """TLS settings through one smtpc_conn_opts (smtpc_bulk_set_conn_opts)."""
    return ("--opts", "--tls-name", "localhost") + more


def ca():
    return process_certs().ca_file


def all_sent(res, n):
    return len(res) == n and all(r[0] == "SENT" for r in res.values())


# ---- modes and the default policy ------------------------------------------------------------

def test_default_on_a_submission_port_does_starttls(postfix):
    port = postfix.starttls_ports["server"]
    res, done, out = run("127.0.0.1", port, 3, *opts("--tls", "default", "--ca-file", ca()))
    assert all_sent(res, 3), out[-1500:]
    got = postfix.wait_for(3)
    assert all("TLS" in str(m.received) for m in got), [m.received for m in got]


def test_default_on_a_plain_server_fails_before_sending(postfix):
    """DEFAULT on a port other than 25/465 requires TLS: a server without
    STARTTLS fails the run at once (one connection), nothing is sent."""
    res, done, out = run("127.0.0.1", postfix.port, 4, *opts("--tls", "default", "--ca-file", ca()))
    assert len(res) == 4 and all(r[0] == "FAILED" and r[1] == "SMTPC_ETLS" for r in res.values()), out
    assert "does not offer STARTTLS and TLS is required" in out
    assert "conns=1 " in done, done
    # the library's default is DEFAULT: the same without any TLS setting at all
    res, done, out = run("127.0.0.1", postfix.port, 2, "--opts")
    assert all(r[1] == "SMTPC_ETLS" for r in res.values()) and len(res) == 2, out
    assert postfix.settle() == []


def test_starttls_optional_uses_starttls_when_offered(postfix):
    res, _, out = run("127.0.0.1", postfix.starttls_ports["server"], 2,
                      *opts("--tls", "starttls-optional", "--ca-file", ca()))
    assert all_sent(res, 2), out[-1500:]
    assert all("TLS" in str(m.received) for m in postfix.wait_for(2))


def test_starttls_optional_plaintext_when_not_offered(postfix):
    res, _, out = run("127.0.0.1", postfix.port, 2, *opts("--tls", "starttls-optional", "--ca-file", ca()))
    assert all_sent(res, 2), out[-1500:]
    assert all("TLS" not in str(m.received) for m in postfix.wait_for(2))


def test_starttls_optional_never_credentials_in_clear(postfix):
    """Not offered + credentials: TLS is required unless plaintext AUTH is allowed."""
    user = ("--user", postfix.user, "--password", postfix.password)
    res, _, out = run("127.0.0.1", postfix.auth_plain_port, 2,
                      *opts("--tls", "starttls-optional", "--ca-file", ca()), *user)
    assert all(r[1] == "SMTPC_ETLS" for r in res.values()) and len(res) == 2, out
    assert "with credentials" in out
    res, _, out = run("127.0.0.1", postfix.auth_plain_port, 2,
                      *opts("--tls", "starttls-optional", "--ca-file", ca()), *user, "--plain-auth")
    assert all_sent(res, 2), out[-1500:]


def test_starttls_offered_then_failed_is_not_plaintext(postfix):
    """A certificate that does not verify: an error, never a fallback to plaintext."""
    res, _, out = run("127.0.0.1", postfix.starttls_ports["expired"], 2,
                      *opts("--tls", "starttls-optional", "--ca-file", ca()))
    assert len(res) == 2 and all(r[0] == "FAILED" and r[1] == "SMTPC_ETLS" for r in res.values()), out
    assert postfix.settle() == []


def test_tls_mode_implicit_constant_is_implicit(aiosmtpd, stunnel_in_front_of):
    """SMTPC_TLS_MODE_IMPLICIT (once the value of bulk's STARTTLS) is implicit
    TLS, through smtpc_bulk_set_tls and through the options."""
    srv = aiosmtpd(pipelining=True)
    tls = stunnel_in_front_of(srv.port)
    res, _, out = run("127.0.0.1", tls.port, 2, "--tls", "implicit", env={"DRV_CA": tls.ca_file})
    assert all_sent(res, 2), out[-1500:]
    res, _, out = run("127.0.0.1", tls.port, 2, *opts("--tls", "implicit", "--ca-file", tls.ca_file))
    assert all_sent(res, 2), out[-1500:]
    assert len(srv.envelopes) == 4


def test_auto_probes_once_and_uses_the_winner(postfix, aiosmtpd, stunnel_in_front_of):
    """AUTO: the session's probe (implicit TLS, then plaintext + STARTTLS)
    decides once; every connection of the run then uses what won."""
    # an implicit-TLS port: implicit TLS (one probe connection, then the run)
    srv = aiosmtpd(pipelining=True)
    tls = stunnel_in_front_of(srv.port)
    res, _, out = run("127.0.0.1", tls.port, 3, *opts("--tls", "auto", "--ca-file", tls.ca_file))
    assert all_sent(res, 3), out[-1500:]
    assert len(srv.envelopes) == 3
    # a plaintext port that offers STARTTLS: STARTTLS on every message
    port = postfix.starttls_ports["server"]
    res, _, out = run("127.0.0.1", port, 3, *opts("--tls", "auto", "--ca-file", ca()))
    assert all_sent(res, 3), out[-1500:]
    got = postfix.wait_for(3)
    assert all("TLS" in str(m.received) for m in got), [m.received for m in got]
    # a plaintext port without STARTTLS: plaintext, no credentials offered
    res, _, out = run("127.0.0.1", postfix.port, 2, *opts("--tls", "auto"))
    assert all_sent(res, 2), out[-1500:]
    got = postfix.wait_for(5)[3:]
    assert len(got) == 2 and not any("TLS" in str(m.received) for m in got), [m.received for m in got]
    # a TLS server whose certificate is refused: the run fails at start,
    # with the reason, and never falls back to plaintext
    res, _, out = run("127.0.0.1", tls.port, 1, *opts("--tls", "auto"))
    assert not any(r[0] == "SENT" for r in res.values()), out[-1500:]
    assert "certificate verification failed" in out, out[-1500:]
    assert len(srv.envelopes) == 3


# ---- certificates --------------------------------------------------------------------------------

def test_ca_file_and_ca_path(postfix, tmp_path):
    port = postfix.starttls_ports["server"]
    # no CA given: the system store does not know the test CA
    res, _, out = run("127.0.0.1", port, 1, *opts("--tls", "starttls"))
    assert res[0][1] == "SMTPC_ETLS", out
    # a hashed directory holding the CA (openssl rehash)
    d = tmp_path / "cas"
    d.mkdir()
    shutil.copy(ca(), d / "test-ca.pem")
    subprocess.run(["openssl", "rehash", str(d)], check=True, capture_output=True)
    res, _, out = run("127.0.0.1", port, 2, *opts("--tls", "starttls", "--ca-path", d))
    assert all_sent(res, 2), out[-1500:]
    # an empty hashed directory: nothing trusted
    e = tmp_path / "empty"
    e.mkdir()
    res, _, out = run("127.0.0.1", port, 1, *opts("--tls", "starttls", "--ca-path", e))
    assert res[0][1] == "SMTPC_ETLS", out
    # the file
    res, _, out = run("127.0.0.1", port, 2, *opts("--tls", "starttls", "--ca-file", ca()))
    assert all_sent(res, 2), out[-1500:]
    # an unreadable file: the run does not start (before any connection)
    _, _, out = run("127.0.0.1", port, 1, *opts("--tls", "starttls", "--ca-file", tmp_path / "none.pem"))
    assert "DONE SMTPC_ECONFIG 0 " in out, out


def test_pins(postfix):
    c = process_certs()
    port = postfix.starttls_ports["server"]
    right = "sha256//" + c["server"].pin_sha256
    wrong = "sha256//" + c["server_rsa"].pin_sha256
    res, _, out = run("127.0.0.1", port, 2, *opts("--tls", "starttls", "--ca-file", ca(), "--pin", right))
    assert all_sent(res, 2), out[-1500:]
    res, _, out = run("127.0.0.1", port, 1, *opts("--tls", "starttls", "--ca-file", ca(), "--pin", wrong))
    assert res[0][:2] == ("FAILED", "SMTPC_ETLS"), out
    # a pin is checked even without verification; one of several must match
    res, _, out = run("127.0.0.1", port, 1, *opts("--tls", "starttls", "--insecure", "--pin", wrong))
    assert res[0][1] == "SMTPC_ETLS", out
    res, _, out = run("127.0.0.1", port, 1, *opts("--tls", "starttls", "--insecure", "--pin", wrong,
                                                  "--pin", right))
    assert all_sent(res, 1), out[-1500:]


def test_client_certificate(postfix):
    cl = process_certs()["client"]
    res, _, out = run("127.0.0.1", postfix.ccert_port, 2,
                      *opts("--tls", "starttls", "--ca-file", ca(), "--cert", cl.cert, "--key", cl.key))
    assert all_sent(res, 2), out[-1500:]
    assert all("verified OK" in str(m.received) for m in postfix.wait_for(2))
    res, _, out = run("127.0.0.1", postfix.ccert_port, 1, *opts("--tls", "starttls", "--ca-file", ca()))
    assert res[0][0] == "FAILED", out


def test_tls_versions(postfix):
    port = postfix.starttls_ports["tls12_only"]
    res, _, out = run("127.0.0.1", port, 1, *opts("--tls", "starttls", "--ca-file", ca(),
                                                  "--tls-versions", "13,0"))
    assert res[0][:2] == ("FAILED", "SMTPC_ETLS"), out
    res, _, out = run("127.0.0.1", port, 1, *opts("--tls", "starttls", "--ca-file", ca(),
                                                  "--tls-versions", "12,12"))
    assert all_sent(res, 1), out[-1500:]
    assert "TLSv1.2" in str(postfix.wait_for(1)[0].received)


# ---- where from: bind address, family; the server ----------------------------------------------------

def test_bind_address_and_port(aiosmtpd):
    srv = aiosmtpd()
    lport = free_port("127.0.0.2")
    res, _, out = run("127.0.0.1", srv.port, 1, "--opts", "--tls", "none", "--bind", f"127.0.0.2,{lport}")
    assert all_sent(res, 1), out[-1500:]
    assert srv.peers and all(p[:2] == ("127.0.0.2", lport) for p in srv.peers), srv.peers
    # an address this host does not have: no connection
    res, _, out = run("127.0.0.1", srv.port, 1, "--opts", "--tls", "none", "--bind", "192.0.2.1", "--attempts", 1)
    assert res[0][1] == "SMTPC_ENETWORK" and "cannot bind to 192.0.2.1" in out, out


def no_address(res, out):
    """The run found no address to connect to: a literal fails the start,
    a name each message."""
    return ("DONE SMTPC_ENOHOST 0 " in out and not res) or \
        (res and all(r[:2] == ("FAILED", "SMTPC_ENOHOST") for r in res.values()))


def test_address_family(aiosmtpd):
    v6 = aiosmtpd(host="::1")
    res, _, out = run("::1", v6.port, 1, "--opts", "--tls", "none", "--family", "6")
    assert all_sent(res, 1), out[-1500:]
    assert v6.peers[0][0] == "::1"
    # IPv4 only: the IPv6 literal has no address to try
    res, _, out = run("::1", v6.port, 1, "--opts", "--tls", "none", "--family", "4")
    assert no_address(res, out) and "(IPv4 only)" in out, out
    # a numeric bind address fixes the family too
    res, _, out = run("::1", v6.port, 1, "--opts", "--tls", "none", "--bind", "127.0.0.1")
    assert no_address(res, out), out
    v4 = aiosmtpd()
    res, _, out = run("127.0.0.1", v4.port, 1, "--opts", "--tls", "none", "--family", "6")
    assert no_address(res, out) and "(IPv6 only)" in out, out
    res, _, out = run("127.0.0.1", v4.port, 1, "--opts", "--tls", "none", "--family", "4")
    assert all_sent(res, 1), out[-1500:]
    # a name (resolved in the resolver thread): localhost is 127.0.0.1 here
    res, _, out = run("localhost", v4.port, 1, "--opts", "--tls", "none", "--family", "4")
    assert all_sent(res, 1), out[-1500:]
    assert all(p[0] == "127.0.0.1" for p in v4.peers)


def test_server_in_the_options_replaces_the_one_given(aiosmtpd):
    srv = aiosmtpd()
    res, _, out = run("192.0.2.1", 9, 2, "--opts", "--tls", "none", "--server", f"127.0.0.1,{srv.port}")
    assert all_sent(res, 2), out[-1500:]
    assert len(srv.envelopes) == 2
