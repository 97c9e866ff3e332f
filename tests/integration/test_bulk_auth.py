"""AUTH in smtpc_bulk (the non-blocking driver): every connection
authenticates after EHLO (after STARTTLS + EHLO), with the engine's SASL
mechanisms, against the private Postfix (Cyrus SASL) and aiosmtpd; a refusal
fails every message with the server's reply and ends the run; credentials
never go over a connection without TLS unless allowed."""
import base64
import os
import re
import socket
import subprocess
import threading
import time

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from conftest import driver
from servers.aiosmtpd_server import free_port
from servers.postfix import postfix, postfix_server  # noqa: F401
from servers.scripted import scripted  # noqa: F401

MID = re.compile(rb"Message-ID: <(\d+)\.bulk@test>")


def run(host, port, count, conns, *opts, ca=None, timeout=300):
    env = dict(os.environ)
    if ca:
        env["DRV_CA"] = ca
    t0 = time.monotonic()
    p = subprocess.run([driver("bulk"), host, str(port), str(count), str(conns), *map(str, opts)],
                       capture_output=True, timeout=timeout, env=env)
    elapsed = time.monotonic() - t0
    out = p.stdout.decode()
    assert p.returncode == 0, p.stderr.decode() + out[-2000:]
    res = {}
    done = None
    for line in out.splitlines():
        assert not line.startswith("DUPLICATE"), line
        if line.startswith("R "):
            f = line.split(" ", 6)
            assert int(f[1]) not in res, line
            res[int(f[1])] = dict(status=f[2], code=int(f[3]), err=f[5], msg=f[6] if len(f) > 6 else "")
        elif line.startswith("DONE"):
            done = line.split()
    assert done is not None, out[-2000:]
    assert len(res) == count, out[-2000:]
    return res, done, elapsed


def log_mark(pf):
    return os.path.getsize(pf.logfile)


def log_since(pf, mark):
    with open(pf.logfile, "rb") as f:
        f.seek(mark)
        return f.read().decode(errors="replace")


def auth_opts(pf, user="alice", password=None, *more):
    return ["--user", user, "--password", pf.users[user] if password is None else password, *more]


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256"])
def test_bulk_auth_postfix_starttls_each_mechanism(postfix, mech):
    mark = log_mark(postfix)
    # submission: AUTH offered only after STARTTLS, and required for MAIL
    res, done, _ = run("127.0.0.1", postfix.submission_port, 40, 4, "--tls", "starttls",
                       *auth_opts(postfix), "--auth", mech, ca=postfix.ca_file)
    assert all(r["status"] == "SENT" for r in res.values()), list(res.values())[:3]
    got = postfix.wait_for(40, timeout=120)
    assert sorted(int(MID.search(m.original_crlf).group(1)) for m in got) == list(range(40))
    # Postfix logs the SASL login of each connection
    log = log_since(postfix, mark)
    assert f"sasl_method={mech}, sasl_username=alice" in log


def test_bulk_without_auth_is_refused_by_submission(postfix):
    # what the tests above rely on: without AUTH, submission refuses MAIL (530)
    res, _, _ = run("127.0.0.1", postfix.submission_port, 5, 1, "--tls", "starttls",
                    ca=postfix.ca_file)
    assert all(r["status"] == "FAILED" and r["code"] == 530 for r in res.values()), res


def test_bulk_auth_postfix_implicit_tls_default_mechanism(postfix):
    mark = log_mark(postfix)
    res, _, _ = run("127.0.0.1", postfix.smtps_port, 30, 3, "--tls", "implicit", *auth_opts(postfix),
                    ca=postfix.ca_file)
    assert all(r["status"] == "SENT" for r in res.values()), list(res.values())[:3]
    postfix.wait_for(30, timeout=120)
    assert "sasl_method=SCRAM-SHA-256, sasl_username=alice" in log_since(postfix, mark)


def test_bulk_auth_wrong_password_fails_every_message(postfix):
    res, done, elapsed = run("127.0.0.1", postfix.submission_port, 200, 8, "--tls", "starttls",
                             *auth_opts(postfix, password="wrong-password"), "--auth", "PLAIN",
                             ca=postfix.ca_file, timeout=120)
    assert all(r["status"] == "FAILED" and r["code"] == 535 and r["err"] == "SMTPC_EAUTH"
               for r in res.values()), list(res.values())[:3]
    assert "AUTH PLAIN" in res[0]["msg"]
    # the run ended by giving up, not after retries or timeouts
    assert done[1] == "0" and int(done[4]) == 200, done
    conns = int(done[8].split("=")[1])
    assert conns <= 8, done
    assert elapsed < 60
    assert postfix.settle() == []


def test_bulk_auth_refused_in_cleartext(postfix):
    # auth_plain_port offers AUTH without TLS: refused unless allowed
    mark = log_mark(postfix)
    res, done, _ = run("127.0.0.1", postfix.auth_plain_port, 20, 2, *auth_opts(postfix), timeout=120)
    assert all(r["status"] == "FAILED" and r["err"] == "SMTPC_EAUTH" and r["code"] == 0 and
               "unencrypted" in r["msg"] for r in res.values()), list(res.values())[:3]
    assert "sasl_method" not in log_since(postfix, mark)
    assert postfix.settle() == []
    # explicitly allowed: sent, and authenticated
    res, _, _ = run("127.0.0.1", postfix.auth_plain_port, 20, 2, *auth_opts(postfix), "--plain-auth",
                    "--auth", "CRAM-MD5")
    assert all(r["status"] == "SENT" for r in res.values()), list(res.values())[:3]
    postfix.wait_for(20, timeout=120)
    assert "sasl_method=CRAM-MD5, sasl_username=alice" in log_since(postfix, mark)


def test_bulk_auth_no_common_mechanism(postfix):
    # PLAIN is never chosen by default without TLS... but with --plain-auth and
    # a mechanism the server does not offer, nothing is in common
    res, _, _ = run("127.0.0.1", postfix.auth_plain_port, 10, 2, *auth_opts(postfix), "--plain-auth",
                    "--auth", "XOAUTH2")
    assert all(r["status"] == "FAILED" and r["err"] == "SMTPC_EAUTH" and
               "no mechanism in common" in r["msg"] for r in res.values()), list(res.values())[:3]


# ---- hostile: a challenge that is not base64 -----------------------------------

def test_bulk_auth_invalid_challenge_cancelled(scripted):
    # RFC 4954 4: the client answers "*"; the server's reply to that ends it,
    # and the run gives up with the step's error (not a retry loop)
    srv = scripted([("send", b"220 hi\r\n"), ("expect", rb"^EHLO "),
                    ("send", b"250-hi\r\n250 AUTH CRAM-MD5\r\n"), ("expect", rb"^AUTH CRAM-MD5$"),
                    ("send", b"334 !!not-base64!!\r\n"), ("expect", rb"^\*$"),
                    ("send", b"501 5.7.0 AUTH cancelled\r\n"), ("sleep", 1), ("close",)])
    res, done, elapsed = run("127.0.0.1", srv.port, 5, 1, "--user", "alice", "--password", "pw",
                             "--plain-auth", timeout=120)
    srv.wait()
    assert srv.errors == []
    assert all(r["status"] == "FAILED" and r["err"] == "SMTPC_EPROTO" and r["code"] == 501 and
               "cancelled; server replied 501" in r["msg"] for r in res.values()), res
    assert "conns=1" in done and elapsed < 60, done


def test_bulk_auth_4xx_is_a_connection_failure(scripted):
    # a temporary refusal may pass on another connection: tried again, a
    # bounded number of times, then every message fails with it
    srv = scripted([("send", b"220 hi\r\n"), ("expect", rb"^EHLO "),
                    ("send", b"250-hi\r\n250 AUTH PLAIN\r\n"), ("expect", rb"^AUTH PLAIN \S+$"),
                    ("send", b"454 4.7.0 Temporary authentication failure\r\n"), ("sleep", 1),
                    ("close",)], connections=20)
    res, done, elapsed = run("127.0.0.1", srv.port, 5, 1, "--user", "alice", "--password", "pw",
                             "--plain-auth", timeout=120)
    assert all(r["status"] == "FAILED" and r["err"] == "SMTPC_ETEMPFAIL" and "454" in r["msg"]
               for r in res.values()), res
    conns = int(done[8].split("=")[1])
    assert 2 <= conns <= 8, done  # retried, but not forever (k * 2 + 4)


# ---- aiosmtpd: PLAIN, LOGIN and a token mechanism (XOAUTH2) -------------------

PASSWORD = "aio-Secret-42"
TOKEN = "ya29.bulk-token"


class AuthHandler:
    def __init__(self):
        self.lock = threading.Lock()
        self.messages = []
        self.logins = []

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        return responses[:-1] + ["250-PIPELINING"] + responses[-1:]

    async def auth_XOAUTH2(self, server, args):
        if len(args) < 2:
            return AuthResult(success=False, handled=False)
        raw = base64.b64decode(args[1])
        ok = raw == b"user=alice\x01auth=Bearer " + TOKEN.encode() + b"\x01\x01"
        with self.lock:
            self.logins.append(("XOAUTH2", ok))
        return AuthResult(success=ok, handled=False, auth_data=LoginPassword(b"alice", b""))

    async def auth_OAUTHBEARER(self, server, args):
        # RFC 7628: gs2 header "n,a=USER," then \x01-separated key=value pairs
        if len(args) < 2:
            return AuthResult(success=False, handled=False)
        raw = base64.b64decode(args[1])
        parts = raw.split(b"\x01")
        ok = parts[0] == b"n,a=alice," and b"auth=Bearer " + TOKEN.encode() in parts
        with self.lock:
            self.logins.append(("OAUTHBEARER", ok))
        return AuthResult(success=ok, handled=False, auth_data=LoginPassword(b"alice", b""))

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.messages.append((session.authenticated, envelope.content))
        return "250 OK"


def aio_authenticator(handler):
    def check(server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and auth_data.login == b"alice" and \
            auth_data.password == PASSWORD.encode()
        with handler.lock:
            handler.logins.append((mechanism, ok))
        return AuthResult(success=ok, handled=False)
    return check


@pytest.fixture
def aio_auth():
    h = AuthHandler()
    port = free_port("127.0.0.1")
    c = Controller(h, hostname="127.0.0.1", port=port, auth_required=True, auth_require_tls=False,
                   authenticator=aio_authenticator(h), ready_timeout=30)
    c.start()
    h.port = port
    yield h
    c.stop()


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_bulk_auth_aiosmtpd(aio_auth, mech):
    res, _, _ = run("127.0.0.1", aio_auth.port, 100, 4, "--user", "alice", "--password", PASSWORD,
                    "--plain-auth", "--auth", mech)
    assert all(r["status"] == "SENT" for r in res.values()), list(res.values())[:3]
    assert len(aio_auth.messages) == 100 and all(a for a, _ in aio_auth.messages)
    # one login per connection, each with the chosen mechanism
    assert 1 <= len(aio_auth.logins) <= 4 and set(aio_auth.logins) == {(mech, True)}


@pytest.mark.parametrize("mech", ["XOAUTH2", "OAUTHBEARER"])
def test_bulk_auth_aiosmtpd_token(aio_auth, mech):
    res, _, _ = run("127.0.0.1", aio_auth.port, 50, 2, "--user", "alice", "--token", TOKEN,
                    "--plain-auth", "--auth", mech)
    assert all(r["status"] == "SENT" for r in res.values()), list(res.values())[:3]
    assert set(aio_auth.logins) == {(mech, True)}
    assert len(aio_auth.messages) == 50


def test_bulk_auth_aiosmtpd_wrong_password(aio_auth):
    res, done, elapsed = run("127.0.0.1", aio_auth.port, 300, 4, "--user", "alice", "--password", "nope",
                             "--plain-auth", "--auth", "PLAIN", timeout=120)
    assert all(r["status"] == "FAILED" and r["code"] == 535 and r["err"] == "SMTPC_EAUTH"
               for r in res.values()), list(res.values())[:3]
    assert aio_auth.messages == []
    assert len(aio_auth.logins) <= 4 and elapsed < 60


# ---- the CLI: smtpc send --count N --connections K with --user/--password-* ----

def cli_send(smtpc_bin, tmp_path, pf, password, *extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMTPC_")}
    env.update(HOME=str(tmp_path), SMTPC_CONFIG="/dev/null", PW=password)
    return subprocess.run([smtpc_bin, "send", "--server", f"localhost:{pf.submission_port}", "--from",
                           "sender@example.org", "--to", "rcpt@example.net", "--count", "30",
                           "--connections", "3", "--tls", "starttls", "--ca-file", pf.ca_file,
                           "--user", "alice", "--password-env", "PW", *extra],
                          cwd=tmp_path, capture_output=True, timeout=120, env=env)


def test_bulk_cli_auth(postfix, smtpc_bin, tmp_path):
    mark = log_mark(postfix)
    r = cli_send(smtpc_bin, tmp_path, postfix, postfix.users["alice"], "--auth", "SCRAM-SHA-1")
    assert r.returncode == 0, r.stderr.decode()
    assert b"30 sent, 0 not sent" in r.stderr
    assert len(postfix.wait_for(30, timeout=120)) == 30
    assert "sasl_method=SCRAM-SHA-1, sasl_username=alice" in log_since(postfix, mark)
    assert postfix.users["alice"].encode() not in r.stdout + r.stderr


def test_bulk_cli_auth_wrong_password(postfix, smtpc_bin, tmp_path):
    r = cli_send(smtpc_bin, tmp_path, postfix, "not-the-password")
    assert r.returncode == 77, r.stderr.decode()  # as a single send: authentication failed
    assert b"0 sent, 30 not sent" in r.stderr and b"535" in r.stderr
    assert b"not-the-password" not in r.stdout + r.stderr
    assert postfix.settle() == []


# ---- a token callback (smtpc_bulk_set_token_cb): expired tokens refreshed -----

# Gmail's answer to an expired XOAUTH2 / OAUTHBEARER token: an error challenge
# (base64 JSON), then, after the client's dummy line, 535.
TOKEN_ERROR = base64.b64encode(b'{"status":"401","schemes":"Bearer","scope":"https://mail.google.com/"}')
REFUSED = b"535-5.7.8 Username and Password not accepted.\r\n535 5.7.8 https://support.google.com\r\n"


def token_of(line):
    """The bearer token in an XOAUTH2 / OAUTHBEARER initial response line."""
    raw = base64.b64decode(line.split()[2])
    m = re.search(rb"auth=Bearer ([^\x01]*)\x01", raw)
    assert m, raw
    return m.group(1).decode()


def tokencb(out):
    m = re.search(r"TOKENCB calls=(\d+) refresh=(\d+)", out)
    assert m, out
    return int(m.group(1)), int(m.group(2))


def run_out(host, port, count, conns, *opts, timeout=120):
    p = subprocess.run([driver("bulk"), host, str(port), str(count), str(conns), *map(str, opts)],
                       capture_output=True, timeout=timeout)
    assert p.returncode == 0, p.stderr.decode()
    return p.stdout.decode()


def one_message():
    return [("expect", rb"^MAIL FROM:<sender@example.org>"), ("send", b"250 ok\r\n"),
            ("expect", rb"^RCPT TO:<rcpt@example.org>$"), ("send", b"250 ok\r\n"),
            ("expect", rb"^DATA$"), ("send", b"354 go\r\n"), ("expect_data",),
            ("send", b"250 2.0.0 queued\r\n")]


def refusal(mech, challenge):
    """The server's refusal of the token in the AUTH line just read."""
    if not challenge:
        return [("send", b"535 5.7.8 Authentication credentials invalid\r\n")]
    ack = rb"^$" if mech == "XOAUTH2" else rb"^AQ==$"  # the dummy line: empty / %x01
    return [("send", b"334 " + TOKEN_ERROR + b"\r\n"), ("expect", ack), ("send", REFUSED)]


@pytest.mark.parametrize("challenge", [True, False], ids=["error-challenge", "plain-535"])
@pytest.mark.parametrize("mech", ["XOAUTH2", "OAUTHBEARER"])
def test_bulk_token_cb_refreshes_a_refused_token(scripted, mech, challenge):
    # token A has expired: refused; the callback is asked for a new one
    # (refresh=true), AUTH goes again on the same connection with B, and
    # every message is delivered once
    auth = rb"^AUTH " + mech.encode() + rb" \S+$"
    srv = scripted([("send", b"220 hi\r\n"), ("expect", rb"^EHLO "),
                    ("send", b"250-hi\r\n250 AUTH " + mech.encode() + b"\r\n"), ("expect", auth),
                    *refusal(mech, challenge), ("expect", auth),
                    ("send", b"235 2.7.0 Accepted\r\n"), *one_message(), *one_message(), *one_message(),
                    ("expect", rb"^QUIT$"), ("send", b"221 bye\r\n"), ("close",)])
    out = run_out("127.0.0.1", srv.port, 3, 1, "--user", "alice", "--token-cb", "tokA,tokB",
                  "--plain-auth", "--auth", mech)
    srv.wait()
    assert srv.errors == [], out
    auths = [line for line in srv.lines if line.startswith(b"AUTH ")]
    assert [token_of(a) for a in auths] == ["tokA", "tokB"]
    assert re.findall(r"^R \d+ (\S+)", out, flags=re.M) == ["SENT"] * 3, out
    assert sorted(int(MID.search(m).group(1)) for m in srv.messages) == [0, 1, 2]
    assert tokencb(out) == (2, 1)  # the current token, then one refresh
    assert "DUPLICATE" not in out and "conns=1" in out, out


def test_bulk_token_cb_new_token_refused_too_gives_up_once(scripted):
    # the new token is refused as well: no second refresh, no loop; every
    # message fails once with the refusal
    auth = rb"^AUTH XOAUTH2 \S+$"
    srv = scripted([("send", b"220 hi\r\n"), ("expect", rb"^EHLO "),
                    ("send", b"250-hi\r\n250 AUTH XOAUTH2\r\n"), ("expect", auth),
                    *refusal("XOAUTH2", True), ("expect", auth), *refusal("XOAUTH2", True),
                    ("sleep", 1), ("close",)])
    res, done, elapsed = run("127.0.0.1", srv.port, 6, 1, "--user", "alice", "--token-cb",
                             "tokA,tokB,tokC", "--plain-auth", timeout=120)
    srv.wait()
    assert srv.errors == []
    assert all(r["status"] == "FAILED" and r["err"] == "SMTPC_EAUTH" and r["code"] == 535 and
               "rejected the token" in r["msg"] for r in res.values()), res
    assert [token_of(a) for a in srv.lines if a.startswith(b"AUTH ")] == ["tokA", "tokB"]
    assert "conns=1" in done and elapsed < 60, done


def test_bulk_token_cb_failing_fails_each_message_once(scripted):
    # the callback fails at once: nothing is sent; each message fails once
    # with the callback's code, and the message says it was the callback
    srv = scripted([("send", b"220 hi\r\n"), ("expect", rb"^EHLO "),
                    ("send", b"250-hi\r\n250 AUTH XOAUTH2 OAUTHBEARER\r\n")], connections=2)
    res, done, elapsed = run("127.0.0.1", srv.port, 8, 2, "--user", "alice", "--token-cb", "!",
                             "--plain-auth", timeout=120)
    assert all(r["status"] == "FAILED" and r["err"] == "SMTPC_ECONFIG" and r["code"] == 0 and
               "token callback failed" in r["msg"] for r in res.values()), res
    assert b"AUTH" not in bytes(srv.received)
    assert elapsed < 60


def test_bulk_token_cb_failing_on_refresh(scripted):
    # the token is refused and the callback cannot give a new one: each
    # message fails once, with the server's refusal and the callback named
    srv = scripted([("send", b"220 hi\r\n"), ("expect", rb"^EHLO "),
                    ("send", b"250-hi\r\n250 AUTH OAUTHBEARER\r\n"), ("expect", rb"^AUTH OAUTHBEARER "),
                    *refusal("OAUTHBEARER", True), ("sleep", 1), ("close",)])
    res, done, _ = run("127.0.0.1", srv.port, 5, 1, "--user", "alice", "--token-cb", "tokA,!",
                       "--plain-auth", timeout=120)
    srv.wait()
    assert srv.errors == []
    assert all(r["status"] == "FAILED" and r["err"] == "SMTPC_ECONFIG" and r["code"] == 535 and
               "token callback failed" in r["msg"] and "new token" in r["msg"]
               for r in res.values()), res
    assert "conns=1" in done, done


class TokenHandler(AuthHandler):
    """aiosmtpd refusing tokens as Gmail does (error challenge, then 535);
    valid(token, n) decides, n = the number of logins so far."""

    def __init__(self, valid):
        super().__init__()
        self.valid = valid
        self.tokens = []  # (token, accepted) per AUTH

    async def _oauth(self, server, args, mech, ack):
        if len(args) < 2:
            return AuthResult(success=False, handled=False)
        m = re.search(rb"auth=Bearer ([^\x01]*)\x01", base64.b64decode(args[1]))
        tok = m.group(1).decode() if m else ""
        with self.lock:
            ok = self.valid(tok, len([t for t in self.tokens if t[1]]))
            self.tokens.append((tok, ok))
        if not ok:
            answer = await server.challenge_auth(base64.b64decode(TOKEN_ERROR))
            assert answer == ack, answer
        return AuthResult(success=ok, handled=False, auth_data=LoginPassword(b"alice", b""))

    async def auth_XOAUTH2(self, server, args):
        return await self._oauth(server, args, "XOAUTH2", b"")

    async def auth_OAUTHBEARER(self, server, args):
        return await self._oauth(server, args, "OAUTHBEARER", b"\x01")


@pytest.fixture
def aio_token():
    started = []

    def start(valid):
        h = TokenHandler(valid)
        port = free_port("127.0.0.1")
        c = Controller(h, hostname="127.0.0.1", port=port, auth_required=True, auth_require_tls=False,
                       authenticator=aio_authenticator(h), ready_timeout=30)
        c.start()
        started.append(c)
        h.port = port
        return h
    yield start
    for c in started:
        c.stop()


def delivered_ids(h):
    return sorted(int(MID.search(content).group(1)) for _, content in h.messages)


@pytest.mark.parametrize("mech", ["XOAUTH2", "OAUTHBEARER"])
def test_bulk_token_cb_token_expires_during_the_run(aio_token, mech):
    # a long run: the token is good for the first logins, then expires; the
    # connections opened after that (5 messages per connection) get refused,
    # refresh, and carry on: every message delivered exactly once
    h = aio_token(lambda tok, n: tok == ("tokA" if n < 3 else "tokB"))
    res, done, _ = run("127.0.0.1", h.port, 60, 2, "--user", "alice", "--token-cb", "tokA,tokB,tokC",
                       "--max-per-conn", "5", "--plain-auth", "--auth", mech)
    assert all(r["status"] == "SENT" for r in res.values()), list(res.values())[:3]
    assert delivered_ids(h) == list(range(60))
    assert all(a for a, _ in h.messages)
    refused = [t for t, ok in h.tokens if not ok]
    assert refused and set(refused) == {"tokA"}, h.tokens
    assert "tokC" not in [t for t, _ in h.tokens], h.tokens  # one refresh was enough
    out_calls = int(done[8].split("=")[1])  # connections opened
    assert out_calls >= 12, done


def test_bulk_token_cb_many_connections_refresh_bounded(aio_token):
    # 4 connections start with an expired token at once: each refusal leads
    # to at most one refresh, and a token another connection already
    # refreshed is not refreshed again
    h = aio_token(lambda tok, n: tok == "tokB")
    out = run_out("127.0.0.1", h.port, 80, 4, "--user", "alice", "--token-cb", "tokA,tokB,tokC,tokD",
                  "--plain-auth", "--auth", "XOAUTH2")
    assert re.findall(r"^R \d+ (\S+)", out, flags=re.M) == ["SENT"] * 80, out[-2000:]
    assert "DUPLICATE" not in out
    assert delivered_ids(h) == list(range(80))
    refused = [t for t, ok in h.tokens if not ok]
    assert 1 <= len(refused) <= 4 and set(refused) == {"tokA"}, h.tokens
    calls, refresh = tokencb(out)
    assert refresh == 1, out[-500:]
    assert calls <= 8, out[-500:]


def test_bulk_token_cb_every_token_refused_is_bounded(aio_token):
    # nothing is accepted: each connection refreshes at most once, then the
    # run gives up; every message fails once
    h = aio_token(lambda tok, n: False)
    t0 = time.monotonic()
    out = run_out("127.0.0.1", h.port, 200, 4, "--user", "alice", "--token-cb",
                  ",".join("tok%d" % i for i in range(12)), "--plain-auth", "--auth", "OAUTHBEARER")
    assert time.monotonic() - t0 < 60
    results = re.findall(r"^R (\d+) (\S+) (\d+) \d+ (\S+)", out, flags=re.M)
    assert sorted(int(i) for i, _, _, _ in results) == list(range(200)), out[-2000:]
    assert all(s == "FAILED" and c == "535" and e == "SMTPC_EAUTH" for _, s, c, e in results), out[-2000:]
    conns = int(re.search(r"conns=(\d+)", out).group(1))
    assert conns <= 4, out[-500:]
    calls, refresh = tokencb(out)
    assert 1 <= refresh <= conns and len(h.tokens) <= 2 * conns, (out[-500:], h.tokens)
    assert h.messages == []


# ---- the CLI: --oauth-token-cmd runs again when the server refuses the token ----

TOKEN_SCRIPT = """#!/bin/sh
# a new token at each run; fails (exit 3) from run FAIL_FROM on
n=$(cat "{d}/runs" 2>/dev/null || echo 0)
n=$((n + 1))
echo "$n" > "{d}/runs"
[ "$n" -ge {fail_from} ] && exit 3
echo "tok$n"
"""


def cli_token_send(smtpc_bin, tmp_path, port, count, fail_from=99):
    script = tmp_path / "token.sh"
    script.write_text(TOKEN_SCRIPT.format(d=tmp_path, fail_from=fail_from))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMTPC_")}
    env.update(HOME=str(tmp_path), SMTPC_CONFIG="/dev/null")
    r = subprocess.run([smtpc_bin, "send", "--server", f"127.0.0.1:{port}", "--from", "sender@example.org",
                        "--to", "rcpt@example.org", "--count", str(count), "--connections", "1", "--tls", "none",
                        "--user", "alice", "--oauth-token-cmd", f"sh {script}", "--allow-plaintext-auth",
                        "--auth", "XOAUTH2"],
                       cwd=tmp_path, capture_output=True, timeout=120, env=env)
    return r, int((tmp_path / "runs").read_text())


def test_bulk_cli_oauth_token_cmd_runs_again_after_a_refusal(scripted, smtpc_bin, tmp_path):
    auth = rb"^AUTH XOAUTH2 \S+$"
    srv = scripted([("send", b"220 hi\r\n"), ("expect", rb"^EHLO "),
                    ("send", b"250-hi\r\n250 AUTH XOAUTH2\r\n"), ("expect", auth),
                    *refusal("XOAUTH2", True), ("expect", auth), ("send", b"235 2.7.0 Accepted\r\n"),
                    *one_message(), *one_message(), ("expect", rb"^QUIT$"), ("send", b"221 bye\r\n"),
                    ("close",)])
    r, runs = cli_token_send(smtpc_bin, tmp_path, srv.port, 2)
    srv.wait()
    assert srv.errors == [], r.stderr.decode()
    assert r.returncode == 0, r.stderr.decode()
    assert b"2 sent, 0 not sent" in r.stderr
    assert [token_of(a) for a in srv.lines if a.startswith(b"AUTH ")] == ["tok1", "tok2"]
    assert runs == 2  # once before the run, once after the refusal
    assert len(srv.messages) == 2
    assert b"tok1" not in r.stdout + r.stderr and b"tok2" not in r.stdout + r.stderr


def test_bulk_cli_oauth_token_cmd_failing_on_refresh(scripted, smtpc_bin, tmp_path):
    srv = scripted([("send", b"220 hi\r\n"), ("expect", rb"^EHLO "),
                    ("send", b"250-hi\r\n250 AUTH XOAUTH2\r\n"), ("expect", rb"^AUTH XOAUTH2 "),
                    *refusal("XOAUTH2", True), ("sleep", 1), ("close",)])
    r, runs = cli_token_send(smtpc_bin, tmp_path, srv.port, 3, fail_from=2)
    srv.wait()
    assert srv.errors == []
    err = r.stderr.decode()
    assert r.returncode == 78, err  # as a single send: the token command failed (configuration)
    assert "0 sent, 3 not sent" in err and err.count("token callback failed") == 3, err
    assert "exit status 3" in err and runs == 2, err


def test_bulk_gave_up_does_not_wait_for_a_connection_still_coming_up():
    # Two connections: the server refuses the first one's AUTH for good and
    # never greets on the second. Every message fails at once, and the run
    # ends then, not when the second connection's greeting timeout (30 s)
    # expires.
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(8)
    held = []

    def serve():
        first = True
        while True:
            try:
                s, _ = ls.accept()
            except OSError:
                return
            held.append(s)
            if not first:
                continue  # silent: no greeting
            first = False
            f = s.makefile("rb")
            s.sendall(b"220 hi\r\n")
            f.readline()
            s.sendall(b"250-hi\r\n250 AUTH PLAIN\r\n")
            f.readline()
            s.sendall(b"535 5.7.8 no\r\n")

    threading.Thread(target=serve, daemon=True).start()
    try:
        res, done, elapsed = run("127.0.0.1", ls.getsockname()[1], 6, 2, "--user", "alice", "--password", "pw",
                                 "--plain-auth", "--timeouts", "30000,30000,30000,30000,0", timeout=120)
    finally:
        ls.close()
        for s in held:
            s.close()
    assert all(r["status"] == "FAILED" and r["code"] == 535 for r in res.values()), res
    assert elapsed < 15, elapsed


def test_bulk_token_cb_tempfail_fails_only_that_connection(aio_token):
    # the token service is briefly unreachable (SMTPC_ETEMPFAIL): that
    # connection fails, the next asks again and the run carries on; every
    # message delivered exactly once
    h = aio_token(lambda tok, n: tok == "tokA")
    res, done, _ = run("127.0.0.1", h.port, 20, 1, "--user", "alice", "--token-cb", "~,tokA",
                       "--plain-auth", "--auth", "XOAUTH2")
    assert all(r["status"] == "SENT" for r in res.values()), list(res.values())[:3]
    assert delivered_ids(h) == list(range(20))


def test_bulk_token_cb_always_tempfail_gives_up_bounded(aio_token):
    h = aio_token(lambda tok, n: True)
    res, done, elapsed = run("127.0.0.1", h.port, 10, 2, "--user", "alice", "--token-cb", "~",
                             "--plain-auth", "--auth", "XOAUTH2")
    assert all(r["status"] == "FAILED" and r["err"] == "SMTPC_ETEMPFAIL" and "token callback failed" in r["msg"]
               for r in res.values()), list(res.values())[:3]
    assert h.messages == [] and elapsed < 60
