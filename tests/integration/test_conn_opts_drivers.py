"""A session and a client configured through one smtpc_conn_opts object
behave exactly like ones configured through their own setters
(drv_conn_opts): the same outcome, TLS and AUTH for CA verification, pins,
the TLS server name, the default STARTTLS policy and credentials that never
travel in clear. The object is changed and freed right after the hand-over
(before anything is sent), so only a copy can send."""
import subprocess

import pytest

from client_servers import counting  # noqa: F401
from conftest import driver
from servers.certs import certs  # noqa: F401
from servers.scripted import scripted  # noqa: F401
from servers.stunnel import stunnel_in_front_of  # noqa: F401
from test_tls_auth_aiosmtpd import PASSWORD, aio_tls  # noqa: F401

HOWS = ("session-setters", "session-opts", "client-setters", "client-opts")


def run(port, how, *args, timeout=60):
    p = subprocess.run([driver("conn_opts"), "127.0.0.1", str(port), "--how", how, *args],
                       capture_output=True, text=True, timeout=timeout)
    assert p.returncode in (0, 1), f"drv_conn_opts {how} {args}: exit {p.returncode}: {p.stderr}"
    out = {"exit": p.returncode, "stdout": p.stdout}
    for line in p.stdout.splitlines():
        k, _, v = line.partition(" ")
        if k in ("open", "send", "first"):
            out[k] = v.split("=", 1)[1]
        elif k == "err":
            out.setdefault("err", v)
        elif k in ("auth", "tls"):
            out[k] = v
    return out


def run_all(port_or_fn, *args):
    """Runs every way; port_or_fn gives a fresh server's port per way when
    it is callable. Returns {how: result}; asserts that each pair (setters,
    options) agrees on everything but the error's wording."""
    res = {}
    for how in HOWS:
        port = port_or_fn() if callable(port_or_fn) else port_or_fn
        res[how] = run(port, how, *args)
    for kind in ("session", "client"):
        a, b = res[f"{kind}-setters"], res[f"{kind}-opts"]
        for k in ("exit", "open", "send", "auth", "tls"):
            assert a.get(k) == b.get(k), (kind, k, a["stdout"], b["stdout"])
    return res


def test_starttls_and_auth_by_the_default_policy(aio_tls):  # noqa: F811
    # Port not 25 with credentials: STARTTLS required, then AUTH.
    res = run_all(aio_tls.port, "--ca", aio_tls.ca_file, "--user", "alice", "--password", PASSWORD)
    for how, r in res.items():
        assert r["send"] == "SMTPC_OK", (how, r["stdout"])
        assert r["auth"] == "PLAIN" and r["tls"].startswith("TLSv1."), (how, r["stdout"])
    assert len(aio_tls.messages) == len(HOWS)
    assert all(authed and tls for authed, tls, *_ in aio_tls.messages)


def test_unknown_ca_is_refused(aio_tls):  # noqa: F811
    # Without the test CA (the system store only): verification fails.
    res = run_all(aio_tls.port, "--user", "alice", "--password", PASSWORD)
    for how, r in res.items():
        assert r.get("open", r.get("send")) == "SMTPC_ETLS", (how, r["stdout"])
        assert "certificate" in r["err"], (how, r["stdout"])
    assert aio_tls.messages == []


def test_new_options_replace_the_tls_context(aio_tls):  # noqa: F811
    # The first open (no CA: the system store) fails verification; the same
    # session given options with the CA then verifies with them, not with
    # the context built for the first.
    r = run(aio_tls.port, "session-reopts", "--ca", aio_tls.ca_file, "--user", "alice", "--password", PASSWORD)
    assert r["first"] == "SMTPC_ETLS" and r["send"] == "SMTPC_OK", r["stdout"]
    assert len(aio_tls.messages) == 1


@pytest.fixture
def implicit_tls(counting, stunnel_in_front_of):  # noqa: F811
    srv = counting()
    return srv, stunnel_in_front_of(srv.port)


def test_pins_and_server_name(implicit_tls, certs):  # noqa: F811
    srv, t = implicit_tls
    good, other = certs.server.pin_sha256, certs.server_rsa.pin_sha256
    implicit = ("--mode", "implicit")
    for args, ok in (((*implicit, "--insecure", "--pin", "sha256//" + other), False),
                     ((*implicit, "--insecure", "--pin", "sha256//" + other, "--pin", "sha256//" + good), True),
                     ((*implicit, "--ca", certs.ca_file, "--server-name", "wrong.example.test"), False),
                     ((*implicit, "--ca", certs.ca_file, "--server-name", "localhost"), True)):
        before = len(srv.envelopes)
        res = run_all(t.port, *args)
        for how, r in res.items():
            want = "SMTPC_OK" if ok else "SMTPC_ETLS"
            assert r.get("send", r.get("open")) == want, (args, how, r["stdout"])
            assert (r["tls"] != "-") == ok, (args, how, r["stdout"])
        assert len(srv.envelopes) == before + (len(HOWS) if ok else 0), args


AUTH_IN_CLEAR = [("send", b"220 mx.test ESMTP\r\n"), ("expect", rb"^EHLO "),
                 ("send", b"250-mx.test\r\n250 AUTH PLAIN LOGIN\r\n"), ("hang",)]


@pytest.mark.parametrize("mode", ["starttls-optional", "default"])
def test_credentials_never_in_clear(scripted, mode):  # noqa: F811
    # A server that offers AUTH and no STARTTLS: with credentials TLS is
    # required (opportunistic or not), nothing after EHLO but QUIT.
    servers = []

    def fresh():
        servers.append(scripted(AUTH_IN_CLEAR))
        return servers[-1].port
    res = run_all(fresh, "--mode", mode, "--user", "alice", "--password", PASSWORD)
    for how, r in res.items():
        assert r.get("open", r.get("send")) == "SMTPC_ETLS", (how, r["stdout"])
        assert "STARTTLS" in r["err"], (how, r["stdout"])
    for s in servers:
        s.wait()
        assert b"AUTH" not in s.received and PASSWORD.encode() not in s.received, s.received
        assert b"MAIL" not in s.received, s.received


def test_default_policy_off_port_25_requires_starttls(scripted):  # noqa: F811
    # No credentials, a port other than 25: submission, TLS required.
    servers = []

    def fresh():
        servers.append(scripted(AUTH_IN_CLEAR))
        return servers[-1].port
    res = run_all(fresh)
    for how, r in res.items():
        assert r.get("open", r.get("send")) == "SMTPC_ETLS", (how, r["stdout"])
    for s in servers:
        s.wait()
        assert b"MAIL" not in s.received, s.received
    # The same server with plaintext allowed (mode none): sent in every way.
    plain = [("send", b"220 mx.test ESMTP\r\n"), ("expect", rb"^EHLO "), ("send", b"250 mx.test\r\n"),
             ("expect", rb"^MAIL FROM:"), ("send", b"250 ok\r\n"), ("expect", rb"^RCPT TO:"),
             ("send", b"250 ok\r\n"), ("expect", rb"^DATA$"), ("send", b"354 go\r\n"), ("expect_data",),
             ("send", b"250 queued\r\n"), ("expect", rb"^QUIT$"), ("send", b"221 bye\r\n")]
    servers.clear()

    def fresh_plain():
        servers.append(scripted(plain))
        return servers[-1].port
    res = run_all(fresh_plain, "--mode", "none")
    for how, r in res.items():
        assert r["send"] == "SMTPC_OK", (how, r["stdout"])
    for s in servers:
        s.wait()
        assert s.errors == [] and len(s.messages) == 1, (s.errors, s.received)


def test_freed_options_are_not_used(aio_tls):  # noqa: F811
    # The control for the hand-over: the object's spoiled settings (another
    # server, other credentials, no TLS) would fail; every way still sends,
    # with the settings it was given (aio_tls refuses anything else).
    res = run_all(aio_tls.port, "--ca", aio_tls.ca_file, "--user", "alice", "--password", PASSWORD,
                  "--auth", "LOGIN")
    for how, r in res.items():
        assert r["send"] == "SMTPC_OK" and r["auth"] == "LOGIN", (how, r["stdout"])
