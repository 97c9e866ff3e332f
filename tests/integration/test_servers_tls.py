"""Self-tests of the TLS test infrastructure: the certificate matrix (servers/certs.py)
judged by Python's ssl, and stunnel in front of a plain server (servers/stunnel.py)."""
import base64
import contextlib
import hashlib
import socket
import ssl
import threading

import pytest

from servers.certs import certs  # noqa: F401


@contextlib.contextmanager
def tls_echo_server(cert, host="127.0.0.1"):
    """A tiny TLS server presenting `cert` (a certs.Cert); answers b'ok' after the handshake."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert.chain, cert.key)
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    ls = socket.socket(fam, socket.SOCK_STREAM)
    ls.bind((host, 0))
    ls.listen(8)
    ls.settimeout(0.1)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                c, _ = ls.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            c.settimeout(10)
            with c:
                try:
                    with ctx.wrap_socket(c, server_side=True) as t:
                        t.sendall(b"ok")
                except (ssl.SSLError, OSError):
                    pass

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    try:
        yield ls.getsockname()[1]
    finally:
        stop.set()
        th.join(5)
        ls.close()


def handshake(port, ca_file, server_hostname="localhost", host="127.0.0.1"):
    ctx = ssl.create_default_context(cafile=ca_file)
    with socket.create_connection((host, port), timeout=10) as s:
        with ctx.wrap_socket(s, server_hostname=server_hostname) as t:
            assert t.recv(2) == b"ok"
            return t.getpeercert(binary_form=True)


@pytest.mark.parametrize("name", ["server", "server_rsa", "chain"])
def test_good_certs_accepted(certs, name):
    with tls_echo_server(certs[name]) as port:
        handshake(port, certs.ca_file)
        handshake(port, certs.ca_file, server_hostname="127.0.0.1")


def test_good_cert_ipv6(certs):
    with tls_echo_server(certs.server, host="::1") as port:
        handshake(port, certs.ca_file, server_hostname="::1", host="::1")


@pytest.mark.parametrize("name,why", [
    ("expired", "certificate has expired"),
    ("not_yet_valid", "certificate is not yet valid"),
    ("wrong_host", "Hostname mismatch"),
    ("self_signed", "self-signed certificate"),
    ("unknown_ca", "unable to get local issuer certificate"),
])
def test_bad_certs_refused(certs, name, why):
    with tls_echo_server(certs[name]) as port:
        with pytest.raises(ssl.SSLCertVerificationError, match=why):
            handshake(port, certs.ca_file)


def test_unknown_ca_accepted_with_its_own_ca(certs):
    with tls_echo_server(certs.unknown_ca) as port:
        handshake(port, certs.unknown_ca_file)


def test_chain_needs_intermediate(certs):
    """The 'chain' cert verifies only because the server sends the intermediate."""
    import dataclasses
    leaf_only = dataclasses.replace(certs.chain, chain=certs.chain.cert)
    with tls_echo_server(leaf_only) as port:
        with pytest.raises(ssl.SSLCertVerificationError):
            handshake(port, certs.ca_file)


def test_wildcard(certs):
    with tls_echo_server(certs.wildcard) as port:
        handshake(port, certs.ca_file, server_hostname="mx.example.test")
        with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
            handshake(port, certs.ca_file, server_hostname="a.b.example.test")
        with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
            handshake(port, certs.ca_file, server_hostname="example.test")


def test_pin_matches_presented_cert(certs):
    from servers.util import run
    with tls_echo_server(certs.server) as port:
        der = handshake(port, certs.ca_file)
    spki = run(["openssl", "x509", "-inform", "DER", "-noout", "-pubkey"], input=der).stdout
    spki_der = run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=spki).stdout
    h = hashlib.sha256(spki_der).digest()
    assert base64.b64encode(h).decode() == certs.server.pin_sha256
    assert h.hex() == certs.server.pin_sha256_hex
    assert certs.server.pin_sha256 != certs.server_rsa.pin_sha256


def test_client_cert_is_for_client_auth(certs):
    """A server that requires client certs from our CA accepts certs.client."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certs.server.cert, certs.server.key)
    ctx.load_verify_locations(certs.ca_file)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)
    seen = {}

    def serve():
        c, _ = ls.accept()
        with ctx.wrap_socket(c, server_side=True) as t:
            seen["peer"] = t.getpeercert()
            t.sendall(b"ok")

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    cctx = ssl.create_default_context(cafile=certs.ca_file)
    cctx.load_cert_chain(certs.client.cert, certs.client.key)
    with socket.create_connection(("127.0.0.1", ls.getsockname()[1]), timeout=10) as s:
        with cctx.wrap_socket(s, server_hostname="localhost") as t:
            assert t.recv(2) == b"ok"
    th.join(5)
    ls.close()
    assert dict(x[0] for x in seen["peer"]["subject"])["commonName"] == "client.smtpc.test"
    assert ("email", "client@example.org") in seen["peer"]["subjectAltName"]


# -- stunnel -------------------------------------------------------------------
from servers.postfix import postfix, postfix_server  # noqa: E402,F401
from servers.stunnel import stunnel_in_front_of  # noqa: E402,F401

import smtplib  # noqa: E402


def test_stunnel_implicit_tls_to_postfix(postfix, stunnel_in_front_of):
    t = stunnel_in_front_of(postfix.port)
    c = ssl.create_default_context(cafile=t.ca_file)
    with smtplib.SMTP_SSL(t.host, t.port, context=c, timeout=30) as s:
        s.ehlo()
        assert "chunking" in s.esmtp_features
        s.sendmail("a@example.org", ["stunnel@example.org"], b"Subject: s\r\n\r\nvia stunnel\r\n")
    [m] = postfix.wait_for(1)
    assert m.rcpt_to == "stunnel@example.org"


def test_stunnel_ipv6_listen_and_tls12(postfix, stunnel_in_front_of):
    t = stunnel_in_front_of(postfix.port, listen="::1", max_tls="TLSv1.2")
    c = ssl.create_default_context(cafile=t.ca_file)
    with smtplib.SMTP_SSL(t.host, t.port, context=c, timeout=30) as s:
        assert s.sock.version() == "TLSv1.2"
        assert s.noop()[0] == 250


@pytest.mark.parametrize("name", ["expired", "wrong_host", "self_signed", "unknown_ca"])
def test_stunnel_presents_bad_certs(postfix, stunnel_in_front_of, name):
    t = stunnel_in_front_of(postfix.port, cert=name)
    c = ssl.create_default_context(cafile=t.ca_file)
    with pytest.raises(ssl.SSLCertVerificationError):
        smtplib.SMTP_SSL(t.host, t.port, context=c, timeout=30)


def test_stunnel_requires_client_cert(postfix, stunnel_in_front_of, certs):
    t = stunnel_in_front_of(postfix.port, require_client_cert=True)
    c = ssl.create_default_context(cafile=t.ca_file)
    with pytest.raises((ssl.SSLError, smtplib.SMTPServerDisconnected, ConnectionError)):
        with smtplib.SMTP_SSL(t.host, t.port, context=c, timeout=30) as s:
            s.noop()
    c.load_cert_chain(certs.client.cert, certs.client.key)
    with smtplib.SMTP_SSL(t.host, t.port, context=c, timeout=30) as s:
        assert s.noop()[0] == 250


def test_stunnel_stopped_at_test_end(postfix, stunnel_in_front_of):
    t = stunnel_in_front_of(postfix.port)
    t.stop()
    assert t.proc.poll() is not None
    with pytest.raises(OSError):
        socket.create_connection((t.host, t.port), timeout=5)


def test_issue_extra_cert_from_test_ca(certs, tmp_path):
    from servers.certs import SERVER_EXT
    c = certs.issue("ip_only", "ip.example.test", SERVER_EXT + ["subjectAltName = IP:127.0.0.1"],
                    str(tmp_path))
    with tls_echo_server(c) as port:
        handshake(port, certs.ca_file, server_hostname="127.0.0.1")
        with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
            handshake(port, certs.ca_file, server_hostname="localhost")
