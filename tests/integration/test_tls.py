"""The TLS layer (src/net/tls.c) against Python ssl servers on loopback, with
the test PKI from servers/certs.py: verification matrix, pins, versions,
SNI, client certificates, truncation, resumption. Driven through
tests/integration/drv_tls.c."""
import os
import socket
import ssl
import subprocess
import threading

import pytest

from conftest import driver
from servers.certs import certs, _Maker, SERVER_EXT  # noqa: F401

TIMEOUT = 60


class TLSServer:
    """Accepts TLS connections on 127.0.0.1 (or ::1) in a thread.

    mode: "greet" sends GREETING then close_notify; "truncate" sends GREETING
    then closes the socket without close_notify; "echo" reads one line and
    sends it back, then close_notify; "count" reads up to a newline and
    answers with the number of bytes, then close_notify."""

    GREETING = b"220 tls test ready\r\n"

    def __init__(self, cert, mode="greet", min_version=None, max_version=None,
                 client_ca=None, host="127.0.0.1", starttls=False):
        self.starttls = starttls
        self.clear_lines = []
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert.chain, cert.key)
        if min_version:
            self.ctx.minimum_version = min_version
        if max_version:
            self.ctx.maximum_version = max_version
        if client_ca:
            self.ctx.verify_mode = ssl.CERT_REQUIRED
            self.ctx.load_verify_locations(client_ca)
        self.sni = []
        self.errors = []
        self.peer_certs = []
        self.ctx.sni_callback = lambda s, name, c: self.sni.append(name)
        self.mode = mode
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(fam, socket.SOCK_STREAM)
        self.sock.bind((host, 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            conn.settimeout(TIMEOUT)
            try:
                if self.starttls:
                    conn.sendall(b"220 clear greeting\r\n")
                    line = b""
                    while not line.endswith(b"\n"):
                        chunk = conn.recv(1)
                        if not chunk:
                            raise OSError("client left before STARTTLS")
                        line += chunk
                    self.clear_lines.append(line)
                    conn.sendall(b"220 2.0.0 go ahead\r\n")
                s = self.ctx.wrap_socket(conn, server_side=True)
            except (ssl.SSLError, OSError) as e:
                self.errors.append(str(e))
                conn.close()
                continue
            try:
                self.peer_certs.append(s.getpeercert())
                if self.mode == "count":
                    total = 0
                    while True:
                        chunk = s.recv(65536)
                        if not chunk:
                            break
                        total += len(chunk)
                        if chunk.endswith(b"\n"):
                            break
                    s.sendall(b"got %d\r\n" % total)
                elif self.mode == "echo":
                    line = b""
                    while not line.endswith(b"\n"):
                        chunk = s.recv(1024)
                        if not chunk:
                            break
                        line += chunk
                    s.sendall(b"echo: " + line)
                else:
                    s.sendall(self.GREETING)
                if self.mode == "truncate":
                    # close the TCP connection under TLS: no close_notify
                    raw = socket.socket(fileno=s.detach())
                    raw.close()
                else:
                    s.unwrap().close()
            except (ssl.SSLError, OSError) as e:
                self.errors.append(str(e))
                try:
                    s.close()
                except OSError:
                    pass

    def close(self):
        self.stop.set()
        self.thread.join(10)
        self.sock.close()


@pytest.fixture
def server_factory():
    made = []

    def make(*a, **kw):
        s = TLSServer(*a, **kw)
        made.append(s)
        return s
    yield make
    for s in made:
        s.close()


@pytest.fixture(scope="module")
def extra_certs(certs, tmp_path_factory):  # noqa: F811
    """Certificates the shared PKI does not have, issued by the same test CA."""
    d = str(tmp_path_factory.mktemp("tls-extra"))
    m = _Maker(d)
    ca = {"cert": certs.ca.cert, "key": certs.ca.key, "cnf": m.new_ca_db("ca-again")}
    return {
        "partial": m.issue(ca, "partial", "a*.example.test",
                           SERVER_EXT + ["subjectAltName = DNS:a*.example.test"]),
        "cn_only": m.issue(ca, "cn_only", "localhost", SERVER_EXT),
        "ip_only": m.issue(ca, "ip_only", "ip.example.test",
                           SERVER_EXT + ["subjectAltName = IP:127.0.0.1"]),
    }


def drv(port, *args, host="127.0.0.1"):
    p = subprocess.run([driver("tls"), host, str(port), *args], capture_output=True,
                       text=True, timeout=TIMEOUT)
    out = {}
    for line in p.stdout.splitlines():
        k, _, v = line.partition(": ")
        out.setdefault(k, v)
    out["_rc"] = p.returncode
    out["_stdout"] = p.stdout
    return out


def ok(r):
    assert r["_rc"] == 0, r["_stdout"]
    assert r.get("handshake") == "ok", r["_stdout"]
    return r


def refused(r, code="SMTPC_ETLS"):
    assert r["_rc"] == 1, r["_stdout"]
    assert "handshake" not in r, r["_stdout"]
    assert r["error"].startswith(code + ": "), r["_stdout"]
    return r["error"]


# ---- verification matrix --------------------------------------------------

def test_good_certificate_and_info(certs, server_factory):  # noqa: F811
    srv = server_factory(certs.server)
    r = ok(drv(srv.port, "--name", "localhost", "--ca", certs.ca_file, "--read"))
    assert r["version"] == "TLSv1.3"
    assert r["cipher"].startswith("TLS_")
    assert r["subject"] == "CN=localhost"
    assert r["issuer"] == "CN=smtpc test CA"
    assert r["not_after"].endswith("Z") and len(r["not_after"]) == 20
    assert r["verified"] == "yes" and r["verify"] == "ok"
    assert r["pin"] == "sha256//" + certs.server.pin_sha256
    assert r["data"] == "220 tls test ready\\r\\n"
    assert r["end"] == "close_notify"
    assert srv.sni == ["localhost"]


def test_chain_with_intermediate(certs, server_factory):  # noqa: F811
    srv = server_factory(certs.chain)
    ok(drv(srv.port, "--name", "localhost", "--ca", certs.ca_file))


@pytest.mark.parametrize("name,why", [
    ("expired", "certificate has expired"),
    ("not_yet_valid", "certificate is not yet valid"),
    ("self_signed", "self-signed certificate"),
    ("unknown_ca", "unable to get local issuer certificate"),
    ("wrong_host", "certificate does not match host name localhost"),
])
def test_refused_with_its_reason(certs, server_factory, name, why):  # noqa: F811
    srv = server_factory(certs[name])
    err = refused(drv(srv.port, "--name", "localhost", "--ca", certs.ca_file))
    assert "certificate verification failed: " + why in err
    # the same certificate through insecure mode: accepted, and the info says why it is bad
    r = ok(drv(srv.port, "--name", "localhost", "--ca", certs.ca_file, "--insecure"))
    assert r["verified"] == "no"
    assert r["verify"] == why


def test_system_store_refuses_test_ca(certs, server_factory):  # noqa: F811
    """Verification is on by default, against the system store."""
    srv = server_factory(certs.server)
    err = refused(drv(srv.port, "--name", "localhost"))
    assert "unable to get local issuer certificate" in err


def test_self_signed_accepted_with_ca_file(certs, server_factory):  # noqa: F811
    srv = server_factory(certs.self_signed)
    ok(drv(srv.port, "--name", "localhost", "--ca", certs.self_signed.cert))


def test_unknown_ca_accepted_with_its_ca(certs, server_factory):  # noqa: F811
    srv = server_factory(certs.unknown_ca)
    ok(drv(srv.port, "--name", "localhost", "--ca", certs.unknown_ca_file))


@pytest.mark.parametrize("name,good", [
    ("a.example.test", True),
    ("A.Example.TEST", True),
    ("a.b.example.test", False),
    ("example.test", False),
    ("aexample.test", False),
])
def test_wildcard(certs, server_factory, name, good):  # noqa: F811
    srv = server_factory(certs.wildcard)
    r = drv(srv.port, "--name", name, "--ca", certs.ca_file)
    if good:
        ok(r)
        assert srv.sni == [name.lower()] or srv.sni == [name]
    else:
        assert "certificate does not match host name " + name in refused(r)


def test_no_partial_wildcards(certs, extra_certs, server_factory):  # noqa: F811
    srv = server_factory(extra_certs["partial"])
    assert "does not match host name abc.example.test" in refused(
        drv(srv.port, "--name", "abc.example.test", "--ca", certs.ca_file))


def test_cn_used_only_without_san(certs, extra_certs, server_factory):  # noqa: F811
    # wrong_host has CN=wrong.example.test and SAN wrong.example.test; its CN
    # is not looked at for "localhost" either way; cn_only has no SAN at all.
    srv = server_factory(extra_certs["cn_only"])
    ok(drv(srv.port, "--name", "localhost", "--ca", certs.ca_file))


def test_ip_literal_against_ip_san(certs, extra_certs, server_factory):  # noqa: F811
    srv = server_factory(certs.server)
    ok(drv(srv.port, "--name", "127.0.0.1", "--ca", certs.ca_file))
    assert srv.sni == [None], "no SNI for an IP literal"
    # an IP SAN does not satisfy a DNS name and the other way round
    srv2 = server_factory(extra_certs["ip_only"])
    ok(drv(srv2.port, "--name", "127.0.0.1", "--ca", certs.ca_file))
    assert "does not match host name localhost" in refused(
        drv(srv2.port, "--name", "localhost", "--ca", certs.ca_file))
    srv3 = server_factory(certs.wrong_host)
    assert "certificate does not match IP address 127.0.0.1" in refused(
        drv(srv3.port, "--name", "127.0.0.1", "--ca", certs.ca_file))


def test_ipv6_literal(certs, server_factory):  # noqa: F811
    try:
        srv = server_factory(certs.server, host="::1")
    except OSError:
        pytest.skip("no IPv6 loopback")
    ok(drv(srv.port, "--name", "[::1]", "--ca", certs.ca_file, host="::1"))
    assert srv.sni == [None]


# ---- pins -------------------------------------------------------------------

def test_pin_accepted_and_mismatch(certs, server_factory):  # noqa: F811
    srv = server_factory(certs.server)
    good = "sha256//" + certs.server.pin_sha256
    other = "sha256//" + certs.server_rsa.pin_sha256
    r = ok(drv(srv.port, "--name", "localhost", "--ca", certs.ca_file, "--pin", good))
    assert r["pinned"] == "yes"
    ok(drv(srv.port, "--name", "localhost", "--ca", certs.ca_file, "--pin", other + ";" + good))
    err = refused(drv(srv.port, "--name", "localhost", "--ca", certs.ca_file, "--pin", other))
    assert "public key pin mismatch" in err and certs.server.pin_sha256 in err
    # pins are checked in insecure mode too: the only check left there
    refused(drv(srv.port, "--name", "localhost", "--insecure", "--pin", other))
    r = ok(drv(srv.port, "--name", "localhost", "--insecure", "--pin", good))
    assert r["verified"] == "no"


def test_pin_syntax(certs, server_factory):  # noqa: F811
    srv = server_factory(certs.server)
    r = drv(srv.port, "--ca", certs.ca_file, "--pin", "sha256//notbase64")
    assert r["_rc"] == 1 and r["error"].startswith("SMTPC_EINVAL: TLS: invalid pin"), r["_stdout"]


# ---- versions -----------------------------------------------------------------

def test_server_tls12_client_min13_fails(certs, server_factory):  # noqa: F811
    srv = server_factory(certs.server, max_version=ssl.TLSVersion.TLSv1_2)
    err = refused(drv(srv.port, "--name", "localhost", "--ca", certs.ca_file, "--min", "1.3"))
    assert "protocol version" in err and "TLS 1.3 to TLS 1.3" in err
    r = ok(drv(srv.port, "--name", "localhost", "--ca", certs.ca_file))
    assert r["version"] == "TLSv1.2"


def test_client_max12(certs, server_factory):  # noqa: F811
    srv = server_factory(certs.server)
    r = ok(drv(srv.port, "--name", "localhost", "--ca", certs.ca_file, "--max", "1.2", "--read"))
    assert r["version"] == "TLSv1.2"
    assert r["end"] == "close_notify"
    srv13 = server_factory(certs.server, min_version=ssl.TLSVersion.TLSv1_3)
    assert "protocol version" in refused(
        drv(srv13.port, "--name", "localhost", "--ca", certs.ca_file, "--max", "1.2"))


def test_version_nearest_and_strict(certs, server_factory):  # noqa: F811
    srv = server_factory(certs.server)
    r = ok(drv(srv.port, "--name", "localhost", "--ca", certs.ca_file, "--min", "1.0"))
    assert r["range"] == "TLS 1.2-TLS 1.3"
    r = drv(srv.port, "--ca", certs.ca_file, "--min", "1.1", "--strict")
    assert r["_rc"] == 1
    assert r["error"].startswith("SMTPC_EUNSUPPORTED: TLS: minimum version TLS 1.1 is not supported"), r["_stdout"]
    r = drv(srv.port, "--ca", certs.ca_file, "--min", "1.3", "--max", "1.2")
    assert r["error"].startswith("SMTPC_EINVAL: TLS: minimum version TLS 1.3 is above the maximum TLS 1.2")


# ---- stream ends ------------------------------------------------------------

def test_unexpected_eof_is_an_error(certs, server_factory):  # noqa: F811
    srv = server_factory(certs.server, mode="truncate")
    r = drv(srv.port, "--name", "localhost", "--ca", certs.ca_file, "--read")
    assert r["_rc"] == 1, r["_stdout"]
    assert r["data"] == "220 tls test ready\\r\\n"
    assert r["end"].startswith("SMTPC_ECLOSED: ") and "close_notify" in r["end"]


def test_write_and_read(certs, server_factory):  # noqa: F811
    srv = server_factory(certs.server, mode="echo")
    r = ok(drv(srv.port, "--name", "localhost", "--ca", certs.ca_file, "--send", "EHLO x\r\n", "--read"))
    assert r["data"] == "echo: EHLO x\\r\\n"


def test_over_a_chunky_inner_layer(certs, server_factory):  # noqa: F811
    """Short reads/writes and EAGAIN from a non-socket inner layer."""
    srv = server_factory(certs.server, mode="echo")
    r = ok(drv(srv.port, "--name", "localhost", "--ca", certs.ca_file, "--chunky",
               "--send", "EHLO chunky\r\n", "--read"))
    assert r["data"] == "echo: EHLO chunky\\r\\n"
    assert r["end"] == "close_notify"
    srv2 = server_factory(certs.server, mode="truncate")
    r = drv(srv2.port, "--name", "localhost", "--ca", certs.ca_file, "--chunky", "--read")
    assert r["end"].startswith("SMTPC_ECLOSED: "), r["_stdout"]


@pytest.mark.parametrize("chunky", [False, True])
def test_bulk_write(certs, server_factory, chunky):  # noqa: F811
    srv = server_factory(certs.server, mode="count")
    n = 100000 if chunky else 3000000
    r = ok(drv(srv.port, "--name", "localhost", "--ca", certs.ca_file, "--bulk", str(n), "--read",
               *(["--chunky"] if chunky else [])))
    assert r["data"] == "got %d\\r\\n" % (n + 1)


def test_starttls_on_an_existing_connection(certs, server_factory):  # noqa: F811
    """TLS put on a connection that already carried clear text (STARTTLS)."""
    srv = server_factory(certs.server, starttls=True, mode="echo")
    r = ok(drv(srv.port, "--name", "localhost", "--ca", certs.ca_file, "--starttls",
               "--send", "EHLO again\r\n", "--read"))
    assert r["clear.greeting"] == "220 clear greeting"
    assert r["clear.starttls"] == "220 2.0.0 go ahead"
    assert srv.clear_lines == [b"STARTTLS\r\n"]
    assert r["data"] == "echo: EHLO again\\r\\n"
    assert r["end"] == "close_notify"


def test_plain_server_is_a_tls_error(certs):  # noqa: F811
    """A server that does not speak TLS (sends an SMTP banner)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    port = s.getsockname()[1]

    def serve():
        c, _ = s.accept()
        c.sendall(b"220 plain text server\r\n" * 10)
        try:
            c.recv(100)
        except OSError:
            pass
        c.close()
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    err = refused(drv(port, "--name", "localhost", "--ca", certs.ca_file))
    assert "wrong version number" in err or "protocol version" in err or "packet length" in err
    t.join(10)
    s.close()


# ---- client certificate, resumption -------------------------------------

def test_client_certificate(certs, server_factory):  # noqa: F811
    srv = server_factory(certs.server, client_ca=certs.ca_file, mode="echo")
    ok(drv(srv.port, "--name", "localhost", "--ca", certs.ca_file, "--cert", certs.client.cert,
           "--key", certs.client.key, "--send", "hi\n", "--read"))
    assert srv.peer_certs and dict(x[0] for x in srv.peer_certs[0]["subject"])["commonName"] == "client.smtpc.test"
    r = drv(srv.port, "--ca", certs.ca_file, "--cert", certs.client.cert, "--key", certs.server.key)
    assert r["error"].startswith("SMTPC_ECONFIG: TLS: cannot load the client key"), r["_stdout"]
    assert "mismatch" in r["error"]
    r = drv(srv.port, "--ca", "/nonexistent/ca.pem")
    assert r["error"].startswith("SMTPC_ECONFIG: TLS: cannot load the CA certificates"), r["_stdout"]


@pytest.mark.parametrize("maxv", ["1.2", "1.3"])
def test_session_resumption(certs, server_factory, maxv):  # noqa: F811
    srv = server_factory(certs.server)
    pin = "sha256//" + certs.server.pin_sha256
    r = ok(drv(srv.port, "--name", "localhost", "--ca", certs.ca_file, "--max", maxv, "--read",
               "--reconnect", "--pin", pin))
    assert r["resumed"] == "no"
    assert r["session"] == "yes"
    assert r["2.handshake"] == "ok"
    assert r["2.resumed"] == "yes", r["_stdout"]
    # a resumed connection still knows (and pins) the certificate it was verified with
    assert r["2.verified"] == "yes" and r["2.subject"] == "CN=localhost"
    assert r["2.pinned"] == "yes"
    assert r["2.end"] == "close_notify"
