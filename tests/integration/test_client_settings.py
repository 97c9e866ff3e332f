"""The client's session-like settings reach its connections (drv_client_settings):
CA directory, TLS server name, pins, client certificates, bind address and
port, address family, the per-attempt timeout and the per-connection deadline;
and a shared pool never lends a connection to a client whose TLS settings or
identity differ (connections counted at the server), also an OAuth token
given through smtpc_client_set_conn_opts."""
import base64
import os
import shutil
import subprocess
import threading
import time

import pytest

from client_servers import counting, kv, lines  # noqa: F401
from conftest import driver
from servers.aiosmtpd_server import aiosmtpd, free_port  # noqa: F401
from servers.certs import certs  # noqa: F401
from servers.scripted import scripted  # noqa: F401
from servers.stunnel import stunnel_in_front_of  # noqa: F401


def run(args, timeout=120):
    p = subprocess.run([driver("client_settings"), *args], capture_output=True, text=True, timeout=timeout)
    assert p.returncode in (0, 1), f"drv_client_settings {args} exited {p.returncode}: {p.stderr}"
    return p


def sends(p):
    return [kv(l) for l in lines(p, "send")]


def errs(p):
    return [l.split(" ", 2)[2] for l in lines(p, "err")]


def opened(p):
    return int(lines(p, "opened")[0].split()[1])


@pytest.fixture
def ca_dir(certs, tmp_path):  # noqa: F811
    """A hashed CA directory (openssl rehash) holding only the test CA."""
    d = tmp_path / "cas"
    d.mkdir()
    shutil.copy(certs.ca_file, d / "test-ca.pem")
    subprocess.run(["openssl", "rehash", str(d)], check=True, capture_output=True, timeout=60)
    assert any(n.endswith(".0") for n in os.listdir(d))
    return str(d)


@pytest.fixture
def tls_server(counting, stunnel_in_front_of):  # noqa: F811
    """Implicit TLS (the test PKI's server certificate: localhost, 127.0.0.1)
    in front of a connection-counting aiosmtpd."""
    def start(**kw):
        srv = counting()
        return srv, stunnel_in_front_of(srv.port, **kw)
    return start


def tls_args(t, *extra, n=1):
    return ["--host", "127.0.0.1", "--port", str(t.port), "--n", str(n), "--client", "--tls", "implicit", *extra]


def test_ca_path_verifies_the_server(tls_server, ca_dir):
    srv, t = tls_server()
    # Without it the test CA is unknown (the system store): refused.
    p = run(tls_args(t))
    assert sends(p)[0]["rc"] == "SMTPC_ETLS", p.stdout
    p = run(tls_args(t, "--ca-path", ca_dir, n=2))
    assert [s["rc"] for s in sends(p)] == ["SMTPC_OK", "SMTPC_OK"], p.stdout
    assert sends(p)[0]["tls"].startswith("TLSv1."), p.stdout
    assert opened(p) == 1


def test_tls_server_name(tls_server, certs):  # noqa: F811
    srv, t = tls_server()
    # 127.0.0.1 is in the certificate, a foreign name is not: refused.
    p = run(tls_args(t, "--ca-file", certs.ca_file, "--server-name", "wrong.example.test"))
    assert sends(p)[0]["rc"] == "SMTPC_ETLS", p.stdout
    assert "wrong.example.test" in errs(p)[0] or "verif" in errs(p)[0].lower(), p.stdout
    # the name the certificate has, while connecting to an address
    p = run(tls_args(t, "--ca-file", certs.ca_file, "--server-name", "localhost"))
    assert sends(p)[0]["rc"] == "SMTPC_OK", p.stdout


def test_pins(tls_server, certs):  # noqa: F811
    srv, t = tls_server()
    good, other = certs.server.pin_sha256, certs.server_rsa.pin_sha256
    p = run(tls_args(t, "--ca-file", certs.ca_file, "--pin", "sha256//" + other))
    assert sends(p)[0]["rc"] == "SMTPC_ETLS", p.stdout
    # checked also without verification
    p = run(tls_args(t, "--insecure", "--pin", "sha256//" + other))
    assert sends(p)[0]["rc"] == "SMTPC_ETLS", p.stdout
    p = run(tls_args(t, "--insecure", "--pin", "sha256//" + other, "--pin", "sha256//" + good))
    assert sends(p)[0]["rc"] == "SMTPC_OK", p.stdout
    assert len(srv.envelopes) == 1


def two_clients(t, a, b, n=4):
    return ["--host", "127.0.0.1", "--port", str(t.port), "--n", str(n),
            "--client", "--tls", "implicit", *a, "--client", "--tls", "implicit", *b]


def test_pool_separates_ca_settings(tls_server, certs, ca_dir):  # noqa: F811
    srv, t = tls_server()
    # Same settings: the two clients share one connection (the control).
    p = run(two_clients(t, ["--ca-file", certs.ca_file], ["--ca-file", certs.ca_file]))
    assert all(s["rc"] == "SMTPC_OK" for s in sends(p)), p.stdout
    assert opened(p) == 1 and [s["reused"] for s in sends(p)] == ["0", "1", "1", "1"], p.stdout
    time.sleep(0.3)
    assert srv.connections == 1
    # Trusting other CAs: never the other client's connection.
    for a, b in ((["--ca-file", certs.ca_file], ["--ca-path", ca_dir]),
                 (["--ca-file", certs.ca_file], ["--ca-file", certs.ca_file, "--server-name", "localhost"]),
                 (["--ca-file", certs.ca_file], ["--insecure"]),
                 (["--ca-file", certs.ca_file], ["--ca-file", certs.ca_file, "--pin",
                                                 "sha256//" + certs.server.pin_sha256])):
        before = srv.connections
        p = run(two_clients(t, a, b))
        assert all(s["rc"] == "SMTPC_OK" for s in sends(p)), (a, b, p.stdout)
        assert opened(p) == 2, (a, b, p.stdout)
        assert [s["reused"] for s in sends(p)] == ["0", "0", "1", "1"], (a, b, p.stdout)
        time.sleep(0.3)
        assert srv.connections == before + 2, (a, b)


def test_pool_separates_client_certificates(tls_server, certs):  # noqa: F811
    # The server requires a client certificate: the client without one must
    # fail on its own connection, never get the one the other client opened
    # with its certificate.
    srv, t = tls_server(require_client_cert=True)
    cert = ["--ca-file", certs.ca_file, "--cert", certs.client.cert, "--key", certs.client.key]
    p = run(two_clients(t, cert, ["--ca-file", certs.ca_file]))
    rcs = [s["rc"] for s in sends(p)]
    assert rcs[0] == "SMTPC_OK" and rcs[2] == "SMTPC_OK", p.stdout
    assert rcs[1] != "SMTPC_OK" and rcs[3] != "SMTPC_OK", p.stdout
    assert sends(p)[2]["reused"] == "1", p.stdout
    time.sleep(0.3)
    assert srv.connections == 1  # only the certified connection got through stunnel
    # Both with the certificate: one connection.
    before = srv.connections
    p = run(two_clients(t, cert, cert))
    assert all(s["rc"] == "SMTPC_OK" for s in sends(p)), p.stdout
    assert opened(p) == 1
    time.sleep(0.3)
    assert srv.connections == before + 1


def test_bind_address_and_port(aiosmtpd):  # noqa: F811
    srv = aiosmtpd()
    port = free_port("127.0.0.1")
    p = run(["--host", "127.0.0.1", "--port", str(srv.port), "--n", "2",
             "--client", "--bind", "127.0.0.1", "--bind-port", str(port)])
    assert [s["rc"] for s in sends(p)] == ["SMTPC_OK", "SMTPC_OK"], p.stdout + p.stderr
    assert srv.peers and all(peer[0] == "127.0.0.1" and peer[1] == port for peer in srv.peers), srv.peers
    # An address of the other family than the server's: connect fails, nothing sent.
    p = run(["--host", "127.0.0.1", "--port", str(srv.port), "--client", "--bind", "::1"])
    assert sends(p)[0]["rc"] == "SMTPC_ENOHOST", p.stdout
    assert "bind address" in errs(p)[0], p.stdout


def test_family(aiosmtpd):  # noqa: F811
    srv = aiosmtpd()
    p = run(["--host", "127.0.0.1", "--port", str(srv.port), "--client", "--family", "4"])
    assert sends(p)[0]["rc"] == "SMTPC_OK", p.stdout
    p = run(["--host", "127.0.0.1", "--port", str(srv.port), "--client", "--family", "6"])
    assert sends(p)[0]["rc"] == "SMTPC_ENOHOST", p.stdout
    assert len(srv.envelopes) == 1


def test_timeout_is_per_attempt_also_on_a_reused_connection(counting):  # noqa: F811
    # The second send re-uses the connection after more than the timeout:
    # it gets its own timeout (it used to inherit the first connect's).
    srv = counting()
    p = run(["--host", "127.0.0.1", "--port", str(srv.port), "--n", "2", "--sleep-ms", "1500",
             "--client", "--timeout-ms", "1000"])
    assert [s["rc"] for s in sends(p)] == ["SMTPC_OK", "SMTPC_OK"], p.stdout
    assert [s["reused"] for s in sends(p)] == ["0", "1"], p.stdout
    assert opened(p) == 1


def test_deadline_is_per_connection(counting):  # noqa: F811
    # Past its deadline a pooled connection is replaced, not used (and not
    # a failure); within it, it is re-used.
    srv = counting()
    p = run(["--host", "127.0.0.1", "--port", str(srv.port), "--n", "3", "--sleep-ms", "1200",
             "--client", "--deadline-ms", "1000"])
    assert [s["rc"] for s in sends(p)] == ["SMTPC_OK"] * 3, p.stdout
    assert [s["reused"] for s in sends(p)] == ["0", "0", "0"], p.stdout
    assert opened(p) == 3
    p = run(["--host", "127.0.0.1", "--port", str(srv.port), "--n", "3",
             "--client", "--deadline-ms", "30000"])
    assert [s["reused"] for s in sends(p)] == ["0", "1", "1"], p.stdout
    assert opened(p) == 1


def test_pool_separates_authzid_and_family(counting):  # noqa: F811
    srv = counting()

    def pair(a, b):
        return run(["--host", "127.0.0.1", "--port", str(srv.port), "--n", "4",
                    "--client", *a, "--client", *b])
    p = pair(["--authzid", "boss@example.org"], ["--authzid", "boss@example.org"])
    assert all(s["rc"] == "SMTPC_OK" for s in sends(p)) and opened(p) == 1, p.stdout
    for a, b in ((["--authzid", "boss@example.org"], ["--authzid", "other@example.org"]),
                 (["--authzid", "boss@example.org"], []),
                 (["--family", "4"], [])):
        p = pair(a, b)
        assert all(s["rc"] == "SMTPC_OK" for s in sends(p)), (a, b, p.stdout)
        assert opened(p) == 2, (a, b, p.stdout)


def test_closing_the_pool_does_not_wait_long_for_quit(scripted):
    # A server that never answers QUIT: the connection the pool closes waits
    # 5 s for the 221, not the command timeout (300 s by default).
    srv = scripted([
        ("send", b"220 hi\r\n"), ("expect", rb"^EHLO "), ("send", b"250-hi\r\n250 PIPELINING\r\n"),
        ("expect", rb"^MAIL FROM:"), ("expect", rb"^RCPT TO:"), ("expect", rb"^DATA$"),
        ("send", b"250 ok\r\n250 ok\r\n354 go\r\n"), ("expect_data",), ("send", b"250 queued\r\n"),
        ("expect", rb"^QUIT$"), ("sleep", 60)])
    t0 = time.monotonic()
    p = run(["--host", "127.0.0.1", "--port", str(srv.port), "--n", "1", "--client"], timeout=60)
    took = time.monotonic() - t0
    assert [s["rc"] for s in sends(p)] == ["SMTPC_OK"], p.stdout
    assert 4.5 < took < 20, took



class XOAuth2Server:
    """aiosmtpd offering AUTH XOAUTH2 in plaintext: counts connections and
    records each token it is given."""

    def __init__(self):
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import SMTP, AuthResult
        self.lock = threading.Lock()
        self.connections = 0
        self.tokens = []
        srv = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                return "250 2.0.0 queued"

            async def auth_XOAUTH2(self, server, args):
                raw = base64.b64decode(args[1]) if len(args) > 1 else b""
                with srv.lock:
                    srv.tokens.append(raw.split(b"auth=Bearer ", 1)[-1].split(b"\x01", 1)[0].decode())
                return AuthResult(success=True)

        class C(Controller):
            def factory(self):
                with srv.lock:
                    srv.connections += 1
                return SMTP(self.handler, hostname=self.hostname, auth_require_tls=False)

        self.port = free_port("127.0.0.1")
        self.controller = C(Handler(), hostname="127.0.0.1", port=self.port, ready_timeout=30)
        self.controller.start()
        with self.lock:
            self.connections = 0  # the controller's readiness probe

    def stop(self):
        self.controller.stop()


@pytest.fixture
def xoauth2():
    s = XOAuth2Server()
    yield s
    s.stop()


def test_pool_separates_oauth_tokens(xoauth2):
    def pair(a, b):
        return run(["--host", "127.0.0.1", "--port", str(xoauth2.port), "--n", "4",
                    "--client", "--oauth-token", a, "--client", "--oauth-token", b])
    # The same token: one connection, authenticated once, for every send.
    p = pair("tok-A", "tok-A")
    assert [s["rc"] for s in sends(p)] == ["SMTPC_OK"] * 4, p.stdout
    assert opened(p) == 1 and xoauth2.tokens == ["tok-A"], (p.stdout, xoauth2.tokens)
    # Another token: never the connection authenticated with the first.
    p = pair("tok-A", "tok-B")
    assert [s["rc"] for s in sends(p)] == ["SMTPC_OK"] * 4, p.stdout
    assert opened(p) == 2 and [s["reused"] for s in sends(p)] == ["0", "0", "1", "1"], p.stdout
    assert sorted(xoauth2.tokens[1:]) == ["tok-A", "tok-B"], xoauth2.tokens
    time.sleep(0.3)
    assert xoauth2.connections == 3
