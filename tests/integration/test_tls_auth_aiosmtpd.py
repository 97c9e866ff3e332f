"""STARTTLS + AUTH PLAIN/LOGIN against aiosmtpd (Python's server, a second
implementation besides Postfix): require_starttls, auth_require_tls."""
import json
import os
import ssl
import subprocess
import threading

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from servers.aiosmtpd_server import free_port
from servers.certs import certs  # noqa: F401

PASSWORD = "aio-Secret-42"


class Handler:
    def __init__(self):
        self.lock = threading.Lock()
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.messages.append((session.authenticated, session.ssl is not None, envelope.mail_from,
                                  envelope.rcpt_tos, envelope.content))
        return "250 OK"


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and auth_data.login == b"alice" and \
        auth_data.password == PASSWORD.encode()
    # handled=False: aiosmtpd then sends the 535 itself (handled defaults to
    # True, meaning "the authenticator already replied": no reply at all)
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def aio_tls(certs):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(certs.server.cert, certs.server.key)
    h = Handler()
    port = free_port("127.0.0.1")
    c = Controller(h, hostname="127.0.0.1", port=port, tls_context=ctx, require_starttls=True,
                   auth_required=True, auth_require_tls=True, authenticator=authenticator,
                   ready_timeout=30)
    c.start()
    h.port = port
    h.ca_file = certs.ca_file
    yield h
    c.stop()


def run(smtpc_bin, tmp_path, h, *args, password=PASSWORD):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMTPC_")}
    env.update(HOME=str(tmp_path), SMTPC_CONFIG="/dev/null", PW=password)
    return subprocess.run([smtpc_bin, "send", "--server", f"localhost:{h.port}", "--ca-file", h.ca_file,
                           "--from", "a@example.org", "--to", "b@example.org", "--text", "aio",
                           "--user", "alice", "--password-env", "PW", "--json", "--trace", *args],
                          cwd=tmp_path, capture_output=True, timeout=120, env=env)


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_aiosmtpd_starttls_auth(smtpc_bin, tmp_path, aio_tls, mech):
    r = run(smtpc_bin, tmp_path, aio_tls, "--auth", mech)
    assert r.returncode == 0, r.stderr
    o = json.loads(r.stdout)
    assert o["tls"]["mode"] == "starttls" and o["auth"] == mech
    [(authed, tls, frm, rcpts, content)] = aio_tls.messages
    assert authed and tls and frm == "a@example.org" and rcpts == ["b@example.org"]
    assert PASSWORD.encode() not in r.stdout + r.stderr


def test_aiosmtpd_wrong_password(smtpc_bin, tmp_path, aio_tls):
    r = run(smtpc_bin, tmp_path, aio_tls, password="wrong-one")
    assert r.returncode == 77, r.stderr
    assert b"535" in r.stdout and b"wrong-one" not in r.stdout + r.stderr
    assert aio_tls.messages == []
