"""SASL EXTERNAL end to end: the client certificate authenticates the client
over TLS (stunnel requires and verifies it, then forwards to a scripted SMTP
server that offers AUTH EXTERNAL). EXTERNAL is used only when asked for and
only with a client certificate; no password is involved."""
import subprocess

from conftest import BUILD_DIR
from servers.certs import process_certs
from servers.scripted import scripted  # noqa: F401
from servers.stunnel import stunnel_in_front_of  # noqa: F401

SMTPC = str(BUILD_DIR / "smtpc")


def script(auth_reply=b"235 2.7.0 Authentication successful\r\n"):
    return [
        ("send", b"220 ext.test ESMTP\r\n"),
        ("expect", rb"^EHLO \S+$"),
        ("send", b"250-ext.test\r\n250-AUTH EXTERNAL PLAIN\r\n250 8BITMIME\r\n"),
        ("expect", rb"^AUTH EXTERNAL( =)?$"),
        ("send", auth_reply),
        ("expect", rb"^MAIL FROM:<a@example.org>"),
        ("send", b"250 ok\r\n"),
        ("expect", rb"^RCPT TO:<b@example.org>"),
        ("send", b"250 ok\r\n"),
        ("expect", rb"^DATA$"),
        ("send", b"354 go\r\n"),
        ("expect_data",),
        ("send", b"250 queued as EXT1\r\n"),
        ("expect", rb"^QUIT$"),
        ("send", b"221 bye\r\n"),
    ]


def send(port, *extra):
    c = process_certs()
    return subprocess.run(
        [SMTPC, "send", "--server", f"127.0.0.1:{port}", "--tls", "implicit",
         "--ca-file", c.ca_file, "--from", "a@example.org", "--to", "b@example.org",
         "--subject", "ext", "--text", "hello", *extra],
        capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin", "SMTPC_CONFIG": "/dev/null"})


def test_external_with_client_certificate(scripted, stunnel_in_front_of):
    c = process_certs()
    srv = scripted(script())
    tun = stunnel_in_front_of(srv.port, require_client_cert=True)
    r = send(tun.port, "--cert", c["client"].cert, "--key", c["client"].key, "--auth", "EXTERNAL")
    srv.wait()
    assert r.returncode == 0, r.stdout + r.stderr
    assert srv.errors == []
    assert any(l.startswith(b"AUTH EXTERNAL") for l in srv.lines)
    assert srv.messages and b"hello" in srv.messages[0]


def test_external_refused_is_an_auth_failure(scripted, stunnel_in_front_of):
    c = process_certs()
    srv = scripted(script(auth_reply=b"535 5.7.8 certificate not mapped to a user\r\n")[:5]
                   + [("expect", rb"^QUIT$"), ("send", b"221 bye\r\n")])
    tun = stunnel_in_front_of(srv.port, require_client_cert=True)
    r = send(tun.port, "--cert", c["client"].cert, "--key", c["client"].key, "--auth", "EXTERNAL")
    srv.wait()
    assert r.returncode == 77, r.stdout + r.stderr
    assert b"MAIL FROM" not in srv.received


def test_no_external_without_a_client_certificate(scripted, stunnel_in_front_of):
    # Without a certificate stunnel refuses the handshake: the client never
    # gets to say anything, and reports a TLS failure, not success.
    srv = scripted(script())
    tun = stunnel_in_front_of(srv.port, require_client_cert=True)
    r = send(tun.port, "--auth", "EXTERNAL")
    assert r.returncode != 0
    assert b"AUTH" not in srv.received
