"""The session's single steps, smtpc_session_ehlo/_helo/_starttls/_auth, called
one by one (drv_secure --do) against a scripted server, aiosmtpd with
STARTTLS and AUTH, and the private Postfix. They run the connection opener
step-wise (src/engine/opener.h), so the same server dialogue gives the same
result through smtpc_session_open and through the single steps: the checks
that compare the two fail if the session had a copy of its own."""
import subprocess

import pytest

from conftest import driver
from servers.certs import certs  # noqa: F401
from servers.postfix import postfix, postfix_server  # noqa: F401
from servers.scripted import scripted  # noqa: F401
from test_tls_auth_aiosmtpd import PASSWORD as AIO_PASSWORD, aio_tls  # noqa: F401

PASSWORD = "Step-by-Step-42"
GREET = ("send", b"220 mx.test ESMTP\r\n")
EHLO = ("expect", rb"^EHLO ")
STEPS = "connect,ehlo,starttls,auth,send,quit"


class Run:
    def __init__(self, proc):
        self.exit = proc.returncode
        self.out = proc.stdout.decode(errors="replace")
        self.rc, self.connected, self.err, self.reply = {}, {}, {}, {}
        self.trace, self.tokens = [], []
        for line in self.out.splitlines():
            w = line.split(" ", 2)
            if w[0] == "step":
                rest = w[2].split()
                self.rc[w[1]] = rest[0][3:]
                self.connected[w[1]] = rest[1] == "connected=1"
            elif w[0] == "err":
                self.err[w[1]] = w[2] if len(w) > 2 else ""
            elif w[0] == "reply":
                self.reply[w[1]] = int(w[2].split()[0])
            elif w[0] == "trace":
                self.trace.append(line[6:])
            elif w[0] == "token":
                self.tokens.append(int(w[1]))
            elif w[0] in ("security", "auth"):
                setattr(self, w[0], w[1])

    def failed(self):
        """(step, rc, err) of the failing step, None when all succeeded."""
        for step, rc in self.rc.items():
            if rc != "SMTPC_OK":
                return step, rc, self.err.get(step)
        return None

    def sent(self, verb):
        return [t for t in self.trace if t.startswith("S " + verb)]


def run(port, *args, host="127.0.0.1", do=STEPS, timeout=60):
    p = subprocess.run([driver("secure"), host, str(port), "--command-timeout-ms", "20000",
                        "--do", do, *args], capture_output=True, timeout=timeout)
    assert p.returncode in (0, 1), p.stdout + p.stderr
    return Run(p)


def creds(*extra):
    return ["--user", "alice", "--password", PASSWORD, *extra]


def client_lines(srv):
    """What the client sent, QUIT left out (the opening says QUIT after a
    refused AUTH; a single step leaves the connection to its caller)."""
    return [ln for ln in srv.received.split(b"\r\n") if ln and ln != b"QUIT"]


# ---- the same dialogue through open and through the steps ---------------------------------

AUTH_PLAIN = ("send", b"250-mx.test\r\n250 AUTH PLAIN LOGIN\r\n")
SAME = {
    "helo_fallback": ([GREET, EHLO, ("send", b"502 5.5.1 EHLO not implemented\r\n"),
                       ("expect", rb"^HELO "), ("send", b"250 mx.test\r\n")], []),
    "ehlo_refused": ([GREET, EHLO, ("send", b"550 5.7.1 not you\r\n")], []),
    "ehlo_tempfail": ([GREET, EHLO, ("send", b"451 4.3.0 later\r\n")], []),
    "auth_refused": ([GREET, EHLO, AUTH_PLAIN, ("expect", rb"^AUTH PLAIN "),
                      ("send", b"535 5.7.8 bad credentials\r\n")], creds("--allow-plain")),
    "auth_tempfail": ([GREET, EHLO, AUTH_PLAIN, ("expect", rb"^AUTH PLAIN "),
                       ("send", b"454 4.7.0 try later\r\n")], creds("--allow-plain")),
    "auth_bad_challenge": ([GREET, EHLO, AUTH_PLAIN, ("expect", rb"^AUTH LOGIN$"),
                            ("send", b"334 !!notbase64\r\n"), ("expect", rb"^\*$"),
                            ("send", b"501 5.7.0 cancelled\r\n")], creds("--allow-plain", "--auth", "LOGIN")),
    "auth_ok": ([GREET, EHLO, AUTH_PLAIN, ("expect", rb"^AUTH PLAIN "), ("send", b"235 2.7.0 ok\r\n")],
                creds("--allow-plain")),
    "token_refreshed": ([GREET, EHLO, ("send", b"250-mx.test\r\n250 AUTH XOAUTH2\r\n"),
                         ("expect", rb"^AUTH XOAUTH2 "), ("send", b"535 5.7.8 expired\r\n"),
                         ("expect", rb"^AUTH XOAUTH2 "), ("send", b"235 2.7.0 ok\r\n")],
                        ["--user", "alice", "--token", "tok1", "--token2", "tok2", "--auth", "XOAUTH2",
                         "--allow-plain"]),
    "token_refused_twice": ([GREET, EHLO, ("send", b"250-mx.test\r\n250 AUTH XOAUTH2\r\n"),
                             ("expect", rb"^AUTH XOAUTH2 "), ("send", b"535 5.7.8 expired\r\n"),
                             ("expect", rb"^AUTH XOAUTH2 "), ("send", b"535 5.7.8 still not\r\n")],
                            ["--user", "alice", "--token", "tok1", "--token2", "tok2", "--auth", "XOAUTH2",
                             "--allow-plain"]),
}


@pytest.mark.parametrize("case", sorted(SAME))
def test_open_and_single_steps_agree(scripted, case):
    script, args = SAME[case]
    results = []
    for do in ("open", "connect,ehlo,auth" if args else "connect,ehlo"):
        srv = scripted(script + [("hang",)])
        r = run(srv.port, "--mode", "none", *args, do=do)
        srv.wait()
        assert srv.errors == [], (do, srv.errors)
        results.append((r, client_lines(srv)))
    (o, o_lines), (st, st_lines) = results
    assert st_lines == o_lines  # the same commands, the same SASL responses
    assert o.tokens == st.tokens
    if o.failed() is None:
        assert st.failed() is None, st.out
        assert st.auth == o.auth
        return
    _, o_rc, o_err = o.failed()
    step, st_rc, st_err = st.failed()
    assert (st_rc, st_err) == (o_rc, o_err), (o.out, st.out)
    assert not o.connected["open"]  # open closes on failure; a refused step keeps the connection
    assert st.connected[step]


# ---- single steps against the scripted server: their documented answers ----------------------

def test_ehlo_502_falls_back_to_helo(scripted):
    srv = scripted([GREET, EHLO, ("send", b"502 5.5.1 EHLO not implemented\r\n"),
                    ("expect", rb"^HELO client\.example$"), ("send", b"250 mx.test\r\n"),
                    ("expect", rb"^NOOP"), ("send", b"250 ok\r\n"), ("expect", rb"^QUIT"),
                    ("send", b"221 bye\r\n")])
    r = run(srv.port, "--ehlo", "client.example", do="connect,ehlo,noop,quit")
    srv.wait()
    assert r.failed() is None and r.reply["ehlo"] == 250, r.out
    assert srv.errors == []


def test_helo_sends_helo_only(scripted):
    srv = scripted([GREET, ("expect", rb"^HELO client\.example$"), ("send", b"250 mx.test\r\n"),
                    ("expect", rb"^QUIT"), ("send", b"221 bye\r\n")])
    r = run(srv.port, "--ehlo", "client.example", do="connect,helo,quit")
    srv.wait()
    assert r.failed() is None and srv.errors == [], r.out


def test_starttls_not_offered_is_unsupported_and_nothing_sent(scripted):
    srv = scripted([GREET, EHLO, ("send", b"250-mx.test\r\n250 AUTH PLAIN\r\n"),
                    ("expect", rb"^NOOP"), ("send", b"250 ok\r\n"), ("expect", rb"^QUIT"),
                    ("send", b"221 bye\r\n")])
    # the mode does not matter to the single step: it was asked for STARTTLS
    r = run(srv.port, "--mode", "starttls", "--keep-going", do="connect,ehlo,starttls,noop,quit")
    srv.wait()
    assert r.rc["starttls"] == "SMTPC_EUNSUPPORTED" and r.connected["starttls"], r.out
    assert "does not offer STARTTLS" in r.err["starttls"]
    assert r.rc["noop"] == "SMTPC_OK" and b"STARTTLS" not in srv.received


def test_starttls_refused_keeps_plaintext_connection(scripted):
    srv = scripted([GREET, EHLO, ("send", b"250-mx.test\r\n250 STARTTLS\r\n"),
                    ("expect", rb"^STARTTLS$"), ("send", b"454 4.7.0 TLS not available\r\n"),
                    ("expect", rb"^QUIT"), ("send", b"221 bye\r\n")])
    r = run(srv.port, "--keep-going", do="connect,ehlo,starttls,quit")
    srv.wait()
    assert r.rc["starttls"] == "SMTPC_ETEMPFAIL" and r.connected["starttls"], r.out
    assert r.reply["starttls"] == 454 and r.security == "none"
    assert srv.errors == []


def test_starttls_closed_after_command_is_etls(scripted):
    srv = scripted([GREET, EHLO, ("send", b"250-mx.test\r\n250 STARTTLS\r\n"),
                    ("expect", rb"^STARTTLS$"), ("close",)])
    r = run(srv.port, do="connect,ehlo,starttls")
    srv.wait()
    assert r.rc["starttls"] == "SMTPC_ETLS" and not r.connected["starttls"], r.out
    assert "not continuing without TLS" in r.err["starttls"]


@pytest.mark.parametrize("allow", [False, True])
def test_auth_in_plaintext_refused_unless_allowed(scripted, allow):
    script = [GREET, EHLO, AUTH_PLAIN]
    if allow:
        script += [("expect", rb"^AUTH PLAIN "), ("send", b"235 2.7.0 ok\r\n")]
    srv = scripted(script + [("expect", rb"^QUIT"), ("send", b"221 bye\r\n")])
    r = run(srv.port, *creds(*(["--allow-plain"] if allow else [])), "--keep-going",
            do="connect,ehlo,auth,quit")
    srv.wait()
    assert srv.errors == []
    if allow:
        assert r.rc["auth"] == "SMTPC_OK" and r.auth == "PLAIN", r.out
    else:
        assert r.rc["auth"] == "SMTPC_EAUTH" and r.connected["auth"], r.out
        assert "unencrypted connection" in r.err["auth"]
        assert b"AUTH" not in srv.received and r.auth == "-"


def test_auth_without_credentials(scripted):
    srv = scripted([GREET, EHLO, AUTH_PLAIN, ("hang",)])
    r = run(srv.port, "--allow-plain", do="connect,ehlo,auth")
    srv.wait()
    assert r.rc["auth"] == "SMTPC_EAUTH" and r.err["auth"] == "AUTH: no credentials", r.out
    assert b"AUTH" not in srv.received


def test_refused_token_refreshed_once(scripted):
    srv = scripted([GREET, EHLO, ("send", b"250-mx.test\r\n250 AUTH XOAUTH2\r\n"),
                    ("expect", rb"^AUTH XOAUTH2 "), ("send", b"535 5.7.8 expired\r\n"),
                    ("expect", rb"^AUTH XOAUTH2 "), ("send", b"535 5.7.8 still not\r\n"),
                    ("expect", rb"^NOOP"), ("send", b"250 ok\r\n"), ("hang",)])
    r = run(srv.port, "--user", "alice", "--token", "tok1", "--token2", "tok2", "--auth", "XOAUTH2",
            "--allow-plain", "--keep-going", do="connect,ehlo,auth,noop")
    srv.wait()
    assert r.tokens == [0, 1], r.out  # one refresh, not two
    assert r.rc["auth"] == "SMTPC_EAUTH" and "still not" in r.err["auth"]
    assert any("refreshing the token" in t for t in r.trace)
    # a refused single step sends no QUIT: the caller still has the connection
    assert r.connected["auth"] and r.rc["noop"] == "SMTPC_OK"
    assert b"QUIT" not in srv.received and srv.errors == []


# ---- aiosmtpd: STARTTLS and AUTH, one step at a time ----------------------------------------

# aio_tls (tests/integration/test_tls_auth_aiosmtpd.py): require_starttls,
# auth_require_tls, user alice with AIO_PASSWORD

@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_aiosmtpd_steps_one_by_one(aio_tls, mech):
    r = run(aio_tls.port, "--ca", aio_tls.ca_file, "--user", "alice", "--password", AIO_PASSWORD,
            "--auth", mech)
    assert r.failed() is None, r.out
    assert r.security == "starttls" and r.auth == mech
    assert len(r.sent("EHLO")) == 2  # EHLO again after the handshake
    [(authed, tls, frm, rcpts, _)] = aio_tls.messages
    assert authed and tls and rcpts == ["b@example.org"]


def test_aiosmtpd_auth_before_starttls_refused(aio_tls):
    r = run(aio_tls.port, "--ca", aio_tls.ca_file, "--user", "alice", "--password", AIO_PASSWORD,
            do="connect,ehlo,auth")
    assert r.rc["auth"] == "SMTPC_EAUTH" and r.connected["auth"], r.out
    assert "unencrypted connection" in r.err["auth"] and r.sent("AUTH") == []


def test_aiosmtpd_wrong_password_same_as_open(aio_tls):
    args = ["--ca", aio_tls.ca_file, "--mode", "starttls", "--user", "alice", "--password", "wrong"]
    o = run(aio_tls.port, *args, do="open")
    st = run(aio_tls.port, *args, do="connect,ehlo,starttls,auth,noop")
    assert o.failed()[1:] == st.failed()[1:] and o.failed()[1] == "SMTPC_EAUTH", (o.out, st.out)
    assert "535" in st.err["auth"] and st.connected["auth"]
    assert aio_tls.messages == []


# ---- the private Postfix -----------------------------------------------------------------------

@pytest.mark.parametrize("mech", ["PLAIN", "SCRAM-SHA-256"])
def test_postfix_submission_steps(postfix, mech):
    r = run(postfix.submission_port, "--ca", postfix.ca_file, "--user", "alice", "--password",
            postfix.users["alice"], "--auth", mech, "--to", f"{mech.lower()}@example.net", host="localhost")
    assert r.failed() is None, r.out
    assert r.security == "starttls" and r.auth == mech
    [m] = postfix.wait_for(1)
    assert m.rcpt_to == f"{mech.lower()}@example.net" and "TLS" in str(m.received)


def test_postfix_starttls_not_offered(postfix):
    r = run(postfix.port, "--keep-going", do="connect,ehlo,starttls,noop,quit")
    assert r.rc["starttls"] == "SMTPC_EUNSUPPORTED" and r.connected["starttls"], r.out
    assert r.rc["noop"] == "SMTPC_OK" and r.sent("STARTTLS") == []


@pytest.mark.parametrize("allow", [False, True])
def test_postfix_auth_in_plaintext(postfix, allow):
    r = run(postfix.auth_plain_port, "--user", "alice", "--password", postfix.users["alice"],
            *(["--allow-plain"] if allow else []), do="connect,ehlo,auth,quit")
    if allow:
        assert r.failed() is None and r.auth != "-", r.out
    else:
        assert r.rc["auth"] == "SMTPC_EAUTH" and r.sent("AUTH") == [], r.out


def test_postfix_wrong_password_same_as_open(postfix):
    args = ["--ca", postfix.ca_file, "--mode", "starttls", "--user", "alice", "--password", "not-it",
            "--auth", "PLAIN"]
    o = run(postfix.submission_port, *args, do="open", host="localhost")
    st = run(postfix.submission_port, *args, do="connect,ehlo,starttls,auth", host="localhost")
    assert o.failed()[1:] == st.failed()[1:] and o.failed()[1] == "SMTPC_EAUTH", (o.out, st.out)
    assert "535" in st.err["auth"]
