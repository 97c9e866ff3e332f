"""The session's TLS and AUTH policy against a scripted hostile server
(servers/scripted.py) through the C API (drv_secure): STARTTLS response
injection, STARTTLS stripped or refused, HELO-only servers, a close after
the 220, bad challenges, endless 334s, a SCRAM server signature that does not
verify, AUTH offered only in plaintext, OAuth token refresh, and a trace
that never carries a secret."""
import base64
import hashlib
import hmac
import re
import socket
import subprocess
import threading

import pytest

from conftest import driver
from servers.scripted import scripted  # noqa: F401

PASSWORD = "S3cr3t-Pa55word!"
GREET = ("send", b"220 mx.test ESMTP\r\n")
EHLO = ("expect", rb"^EHLO ")


def run(port, *args, host="127.0.0.1", timeout=60):
    r = subprocess.run([driver("secure"), host, str(port), "--command-timeout-ms", "10000", *args],
                       capture_output=True, timeout=timeout)
    out = r.stdout.decode(errors="replace")
    res = {"rc": None, "err": "", "trace": [], "tokens": [], "out": out, "exit": r.returncode}
    for line in out.splitlines():
        if line.startswith("open rc="):
            res["rc"] = line.split()[1][3:]
        elif line.startswith("err ") and not res["err"]:
            res["err"] = line[4:]
        elif line.startswith("trace "):
            res["trace"].append(line[6:])
        elif line.startswith("token "):
            res["tokens"].append(int(line[6:]))
        elif line.startswith("security "):
            res["security"] = line.split()[1]
        elif line.startswith("auth "):
            res["auth"] = line.split()[1]
        elif line.startswith("send rc="):
            res["send"] = line.split()[1][3:]
    return res


def creds(*extra):
    return ["--user", "alice", "--password", PASSWORD, *extra]


def never_sent_secrets(srv):
    data = srv.received
    assert PASSWORD.encode() not in data
    for enc in (base64.b64encode(b"\0alice\0" + PASSWORD.encode()), base64.b64encode(PASSWORD.encode())):
        assert enc not in data
    assert not re.search(rb"(?m)^(AUTH|MAIL|RCPT)", data), data


# ---- STARTTLS ----------------------------------------------------------------------------

def test_starttls_response_injection_refused(scripted):
    srv = scripted([GREET, EHLO, ("send", b"250-mx.test\r\n250 STARTTLS\r\n"),
                    ("expect", rb"^STARTTLS$"),
                    # the 220 and injected plaintext in one packet (CVE-2021-22947 family)
                    ("send", b"220 2.0.0 go ahead\r\n250-evil\r\n250 AUTH PLAIN\r\n"),
                    ("hang",)])
    r = run(srv.port, "--mode", "starttls", *creds())
    srv.wait()
    assert r["rc"] == "SMTPC_EPROTO", r
    # STARTTLS was the last thing sent: no handshake on the poisoned stream, no AUTH
    assert srv.received.endswith(b"STARTTLS\r\n"), srv.received
    never_sent_secrets(srv)


@pytest.mark.parametrize("mode", ["starttls", "auto", "starttls-optional"])
def test_starttls_stripped_fails_before_mail_or_auth(scripted, mode):
    # an active attacker removed STARTTLS from the EHLO reply; AUTH looks offered
    srv = scripted([GREET, EHLO, ("send", b"250-mx.test\r\n250-AUTH PLAIN LOGIN\r\n250 PIPELINING\r\n"),
                    ("hang",)], connections=2 if mode == "auto" else 1)
    r = run(srv.port, "--mode", mode, "--auto-ms", "2000", *creds(), "--send")
    srv.wait()
    assert r["rc"] == "SMTPC_ETLS", r
    assert "does not offer STARTTLS" in r["err"]
    never_sent_secrets(srv)


def test_starttls_optional_without_credentials_goes_plaintext(scripted):
    srv = scripted([GREET, EHLO, ("send", b"250-mx.test\r\n250 PIPELINING\r\n"),
                    ("expect", rb"^MAIL FROM:<a@example.org>"), ("send", b"250 ok\r\n"),
                    ("expect", rb"^RCPT TO:"), ("send", b"250 ok\r\n"),
                    ("expect", rb"^DATA"), ("send", b"354 go\r\n"), ("expect_data",),
                    ("send", b"250 queued\r\n"), ("expect", rb"^QUIT"), ("send", b"221 bye\r\n")])
    r = run(srv.port, "--mode", "starttls-optional", "--send")
    srv.wait()
    assert r["rc"] == "SMTPC_OK" and r["send"] == "SMTPC_OK" and r["security"] == "none", r
    assert any("continuing in plaintext" in t for t in r["trace"])


@pytest.mark.parametrize("reply", [b"454 4.7.0 TLS not available\r\n", b"502 5.5.1 no\r\n",
                                   b"500 5.5.2 what\r\n"])
@pytest.mark.parametrize("mode", ["starttls", "starttls-optional"])
def test_starttls_refused_no_fallback(scripted, reply, mode):
    srv = scripted([GREET, EHLO, ("send", b"250-mx.test\r\n250-AUTH PLAIN\r\n250 STARTTLS\r\n"),
                    ("expect", rb"^STARTTLS$"), ("send", reply), ("hang",)])
    r = run(srv.port, "--mode", mode, "--send")
    srv.wait()
    assert r["rc"] == "SMTPC_ETLS", r
    assert reply[:3].decode() in r["err"]
    assert srv.received.endswith(b"STARTTLS\r\n")
    never_sent_secrets(srv)


def test_helo_only_server_fails_when_tls_required(scripted):
    srv = scripted([GREET, EHLO, ("send", b"502 5.5.1 EHLO not implemented\r\n"),
                    ("expect", rb"^HELO "), ("send", b"250 mx.test\r\n"), ("hang",)])
    r = run(srv.port, "--mode", "starttls", *creds(), "--send")
    srv.wait()
    assert r["rc"] == "SMTPC_ETLS", r
    never_sent_secrets(srv)


def test_close_after_220_is_a_tls_failure(scripted):
    srv = scripted([GREET, EHLO, ("send", b"250-mx.test\r\n250 STARTTLS\r\n"),
                    ("expect", rb"^STARTTLS$"), ("send", b"220 go ahead\r\n"), ("close",)])
    r = run(srv.port, "--mode", "starttls", *creds(), "--send")
    srv.wait()
    assert r["rc"] == "SMTPC_ETLS", r
    assert "closed" in r["err"] or "reset" in r["err"] or "EOF" in r["err"], r["err"]
    never_sent_secrets(srv)


def test_auto_tries_implicit_then_plaintext(scripted):
    # auto without credentials: the implicit-TLS attempt meets a plaintext
    # greeting (fails at once), the plaintext attempt finds no STARTTLS:
    # opportunistic, so the mail goes (with credentials it would not: above)
    script = [GREET, EHLO, ("send", b"250-mx.test\r\n250 PIPELINING\r\n"),
              ("expect", rb"^QUIT"), ("send", b"221 bye\r\n")]
    srv = scripted(script, connections=2)
    r = run(srv.port, "--mode", "auto", "--auto-ms", "3000")
    srv.wait()
    assert r["rc"] == "SMTPC_OK" and r["security"] == "none", r
    assert srv.connections == 2
    ms = int(re.search(r"open rc=\S+ ms=(\d+)", r["out"]).group(1))
    assert ms < 2500, ms  # no timeout was needed
    assert any("trying plaintext" in t for t in r["trace"])


# ---- AUTH --------------------------------------------------------------------------------

def plain_auth_script(mechs, *steps):
    return [GREET, EHLO, ("send", b"250-mx.test\r\n250 AUTH " + mechs + b"\r\n"), *steps]


def test_auth_offered_only_in_plaintext_sends_no_credentials(scripted):
    srv = scripted(plain_auth_script(b"PLAIN LOGIN CRAM-MD5", ("hang",)))
    r = run(srv.port, "--mode", "none", *creds(), "--send")
    srv.wait()
    assert r["rc"] == "SMTPC_EAUTH" and "unencrypted" in r["err"], r
    never_sent_secrets(srv)


def test_bad_base64_challenge_cancels(scripted):
    srv = scripted(plain_auth_script(b"CRAM-MD5", ("expect", rb"^AUTH CRAM-MD5$"),
                                     ("send", b"334 !!!not base64!!!\r\n"),
                                     ("expect", rb"^\*$"), ("send", b"501 5.7.0 cancelled\r\n"),
                                     ("hang",)))
    r = run(srv.port, "--mode", "none", "--allow-plain", *creds())
    srv.wait()
    assert srv.errors == []
    assert r["rc"] == "SMTPC_EPROTO", r
    assert PASSWORD.encode() not in srv.received


def test_endless_challenges_are_bounded(scripted):
    steps = [("expect", rb"^AUTH LOGIN")]
    for _ in range(30):
        steps += [("send", b"334 VXNlcm5hbWU6\r\n"), ("expect", rb".*")]
    srv = scripted(plain_auth_script(b"LOGIN", *steps))
    r = run(srv.port, "--mode", "none", "--allow-plain", *creds())
    srv.wait()
    assert r["rc"] in ("SMTPC_EAUTH", "SMTPC_EPROTO"), r
    # the client gave up after a bounded number of rounds and said "*"
    assert len(srv.lines) < 16, srv.lines
    assert b"*" in srv.lines


def test_5xx_to_auth_is_eauth(scripted):
    srv = scripted(plain_auth_script(b"PLAIN", ("expect", rb"^AUTH PLAIN \S+$"),
                                     ("send", b"535 5.7.8 Authentication credentials invalid\r\n"),
                                     ("expect", rb"^QUIT"), ("send", b"221 bye\r\n")))
    r = run(srv.port, "--mode", "none", "--allow-plain", *creds())
    srv.wait()
    assert r["rc"] == "SMTPC_EAUTH" and "535" in r["err"], r
    # the trace redacts the initial response
    assert "S AUTH PLAIN ********" in r["trace"], r["trace"]
    assert PASSWORD not in r["out"]
    assert base64.b64encode(b"\0alice\0" + PASSWORD.encode()).decode() not in r["out"]


def test_crlf_in_credentials_refused():
    r = subprocess.run([driver("secure"), "127.0.0.1", "1", "--user", "alice", "--password",
                        "pw\r\nMAIL FROM:<x>"], capture_output=True, timeout=30)
    assert b"credentials rc=SMTPC_EINVAL" in r.stdout


class ScramServer:
    """A SCRAM-SHA-256 server (one connection) whose final signature is wrong
    (or right, with good=True)."""

    def __init__(self, good=False):
        self.good = good
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        self.received = b""
        self.result = None
        self.cfinal_b64 = None
        self.t = threading.Thread(target=self.serve, daemon=True)
        self.t.start()

    def serve(self):
        c, _ = self.sock.accept()
        c.settimeout(20)
        f = c.makefile("rb")

        def line():
            x = f.readline()
            self.received += x
            return x.rstrip(b"\r\n")

        def send(b):
            c.sendall(b)
        try:
            send(b"220 mx.test\r\n")
            line()
            send(b"250-mx.test\r\n250 AUTH SCRAM-SHA-256\r\n")
            a = line().split(b" ")
            cfirst = base64.b64decode(a[2]) if len(a) > 2 else None
            if cfirst is None:
                send(b"334 \r\n")
                cfirst = base64.b64decode(line())
            bare = cfirst.split(b",", 2)[2]
            cnonce = dict(p.split(b"=", 1) for p in bare.split(b","))[b"r"]
            salt, it = b"saltsaltsalt", 4096
            sfirst = b"r=" + cnonce + b"SERVER,s=" + base64.b64encode(salt) + b",i=" + str(it).encode()
            send(b"334 " + base64.b64encode(sfirst) + b"\r\n")
            self.cfinal_b64 = line()
            cfinal = base64.b64decode(self.cfinal_b64)
            without_proof = cfinal.rsplit(b",p=", 1)[0]
            salted = hashlib.pbkdf2_hmac("sha256", PASSWORD.encode(), salt, it)
            skey = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
            msg = bare + b"," + sfirst + b"," + without_proof
            sig = hmac.new(skey, msg, hashlib.sha256).digest()
            if not self.good:
                sig = bytes([sig[0] ^ 1]) + sig[1:]
            send(b"334 " + base64.b64encode(b"v=" + base64.b64encode(sig)) + b"\r\n")
            self.result = line()
            send(b"235 2.7.0 ok\r\n" if self.result == b"" else b"501 5.7.0 cancelled\r\n")
            line()
            send(b"221 bye\r\n")
        except Exception as e:  # noqa: BLE001 - recorded for the test
            self.result = self.result if self.result is not None else repr(e)
        finally:
            c.close()
            self.sock.close()


@pytest.mark.parametrize("good", [False, True])
def test_scram_server_signature_is_verified(good):
    srv = ScramServer(good=good)
    r = run(srv.port, "--mode", "none", "--allow-plain", *creds())
    srv.t.join(30)
    # the client proof never reaches the trace callback
    assert srv.cfinal_b64 and srv.cfinal_b64.decode() not in r["out"]
    assert "S ********" in r["trace"]
    if good:
        assert r["rc"] == "SMTPC_OK" and r["auth"] == "SCRAM-SHA-256", r
        assert srv.result == b""
    else:
        assert r["rc"] == "SMTPC_EAUTH", r
        assert srv.result == b"*", srv.result  # the client cancelled instead of accepting
        assert "signature" in r["err"].lower(), r["err"]


@pytest.mark.parametrize("mech", ["XOAUTH2", "OAUTHBEARER"])
@pytest.mark.parametrize("long_token", [False, True])
def test_oauth_token_refresh_retries_once(scripted, long_token, mech):
    m = mech.encode()
    t1 = "old-token" + ("x" * 900 if long_token else "")
    t2 = "fresh-token" + ("y" * 900 if long_token else "")
    err = base64.b64encode(b'{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}')
    if long_token:
        # the initial response does not fit the 512-octet AUTH line: sent after an empty 334
        first = [("expect", rb"^AUTH " + m + rb"$"), ("send", b"334 \r\n"), ("expect", rb"^\S{600,}$")]
        second = list(first)
    else:
        first = [("expect", rb"^AUTH " + m + rb" \S+$")]
        second = list(first)
    # RFC 7628: the client answers the error challenge with %x01 ("AQ=="); XOAUTH2 with ""
    ack = rb"^AQ==$" if mech == "OAUTHBEARER" else rb"^$"
    srv = scripted(plain_auth_script(m, *first, ("send", b"334 " + err + b"\r\n"),
                                     ("expect", ack), ("send", b"535 5.7.8 token expired\r\n"),
                                     *second, ("send", b"235 2.7.0 Accepted\r\n"),
                                     ("expect", rb"^QUIT"), ("send", b"221 bye\r\n")))
    r = run(srv.port, "--mode", "none", "--allow-plain", "--user", "alice@example.org",
            "--token", t1, "--token2", t2)
    srv.wait()
    assert srv.errors == []
    assert r["rc"] == "SMTPC_OK" and r["auth"] == mech, r
    assert r["tokens"] == [0, 1]
    lines = [l for l in srv.lines if len(l) > 40]
    decoded = [base64.b64decode(l.split(b" ")[-1]) for l in lines]
    assert t1.encode() in decoded[0] and t2.encode() in decoded[-1]
    assert all(t1 not in x and t2 not in x for x in r["trace"])
