"""The CLI issue's remaining pieces against real servers: --count over one
connection, DSN parameters reaching Postfix, --trace (timestamps, AUTH
redacted for PLAIN/LOGIN/XOAUTH2, headers only unless --trace-body), hints
on failures, the --json schema (every documented field, every delivery
kind), the progress line (terminal only), server text escaped, exit
statuses per sysexits.h, probe features and --auth-test, and the sendmail
link driven by mail(1)."""
import base64
import json
import os
import pty
import re
import select
import shutil
import socket
import subprocess
import time

import pytest

from servers.aiosmtpd_server import aiosmtpd  # noqa: F401
from servers.postfix import postfix, postfix_server  # noqa: F401
from servers.scripted import scripted  # noqa: F401

FROM = "sender@example.org"
TS = rb"\d\d:\d\d:\d\d\.\d\d\d"


def env_for(tmp_path, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMTPC_")}
    env["HOME"] = str(tmp_path)
    env["SMTPC_CONFIG"] = "/dev/null"
    env.update(extra)
    return env


def run(smtpc_bin, tmp_path, *args, input=None, env=None, argv0=None):
    return subprocess.run([argv0 or smtpc_bin, *args], cwd=tmp_path, input=input, capture_output=True,
                          timeout=120, env=env or env_for(tmp_path), executable=smtpc_bin)


def send_plain(smtpc_bin, tmp_path, port, *args, **kw):
    return run(smtpc_bin, tmp_path, "send", "--server", f"127.0.0.1:{port}", "--tls", "none",
               "--from", FROM, *args, **kw)


def pf_send(smtpc_bin, tmp_path, pf, *args, password=None, user="alice"):
    pw = pf.users[user] if password is None else password
    return run(smtpc_bin, tmp_path, "send", "--server", f"localhost:{pf.submission_port}",
               "--ca-file", pf.ca_file, "--user", user, "--password-env", "PW", "--from", FROM,
               *args, env=env_for(tmp_path, PW=pw))


# ---- --count ------------------------------------------------------------------------

def test_count_uses_one_connection(smtpc_bin, tmp_path, aiosmtpd):
    srv = aiosmtpd(pipelining=True)
    r = send_plain(smtpc_bin, tmp_path, srv.port, "--to", "b@example.org", "--text", "x", "--count", "5",
                   "--json")
    assert r.returncode == 0, r.stderr
    objs = [json.loads(line) for line in r.stdout.decode().splitlines()]
    assert len(objs) == 5 and all(o["ok"] for o in objs)
    assert len(srv.envelopes) == 5
    assert len(srv.peers) == 1  # one EHLO: one connection for the five
    ids = {re.search(rb"Message-ID: (\S+)", e.data, re.I).group(1) for e in srv.envelopes}
    assert len(ids) == 5


def read_pty(master, p):
    err = b""
    while True:
        rd, _, _ = select.select([master], [], [], 1.0)
        if rd:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            err += chunk
        elif p.poll() is not None:
            break
    return err


def slow_transactions(n, delay):
    steps = [("send", b"220 hi\r\n"), ("expect", rb"^EHLO "), ("send", b"250 hi\r\n")]
    for i in range(n):
        steps += [("expect", rb"^MAIL FROM:"), ("send", b"250 ok\r\n"), ("expect", rb"^RCPT TO:"),
                  ("send", b"250 ok\r\n"), ("expect", rb"^DATA$"), ("send", b"354 go\r\n"),
                  ("expect_data",), ("sleep", delay), ("send", b"250 queued as Q%d\r\n" % i)]
    return steps + [("expect", rb"^QUIT$"), ("send", b"221 bye\r\n"), ("close",)]


def test_count_progress_only_on_a_terminal(smtpc_bin, tmp_path, scripted):
    def args(port):
        return [smtpc_bin, "send", "--server", f"127.0.0.1:{port}", "--tls", "none", "--from", FROM,
                "--to", "b@example.org", "--text", "x", "--count", "4"]
    # piped: no progress line, no carriage return
    srv = scripted(slow_transactions(4, 0.3))
    r = subprocess.run(args(srv.port), cwd=tmp_path, capture_output=True, timeout=120, env=env_for(tmp_path))
    srv.wait()
    assert r.returncode == 0, r.stderr
    assert srv.errors == [] and srv.connections == 1
    assert b"\r" not in r.stderr and b"messages:" not in r.stderr and r.stderr == b""
    # stderr on a pseudo-terminal: the line appears (and is erased at the end)
    srv = scripted(slow_transactions(4, 0.3))
    master, slave = pty.openpty()
    p = subprocess.Popen(args(srv.port), cwd=tmp_path, stdout=subprocess.PIPE, stderr=slave,
                         env=env_for(tmp_path))
    os.close(slave)
    err = read_pty(master, p)
    out = p.stdout.read()
    p.wait(timeout=60)
    os.close(master)
    assert p.returncode == 0, err
    assert out.count(b"sent to 1 recipient") == 4
    assert re.search(rb"\r\x1b\[Kmessages: [123] / 4 \(\d+%\), [\d.]+ msg/s, ETA 0:0\d", err), err
    assert err.endswith(b"\r\x1b[K")  # erased: the terminal is left clean


def test_upload_progress_on_a_terminal(smtpc_bin, tmp_path, scripted):
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(12 << 20))
    srv = scripted([
        ("send", b"220 hi\r\n"), ("expect", rb"^EHLO "), ("send", b"250 hi\r\n"),
        ("expect", rb"^MAIL FROM:"), ("send", b"250 ok\r\n"), ("expect", rb"^RCPT TO:"),
        ("send", b"250 ok\r\n"), ("expect", rb"^DATA$"), ("send", b"354 go\r\n"),
        ("sleep", 1.5), ("count_data",), ("send", b"250 queued as BIG1\r\n"),
        ("expect", rb"^QUIT$"), ("send", b"221 bye\r\n"), ("close",)])
    master, slave = pty.openpty()
    p = subprocess.Popen([smtpc_bin, "send", "--server", f"127.0.0.1:{srv.port}", "--tls", "none",
                          "--from", FROM, "--to", "b@example.org", "--text", "x", "--attach", str(big)],
                         cwd=tmp_path, stdout=subprocess.PIPE, stderr=slave, env=env_for(tmp_path))
    os.close(slave)
    err = read_pty(master, p)
    out = p.stdout.read()
    p.wait(timeout=60)
    os.close(master)
    assert p.returncode == 0, err
    assert b"queued as BIG1" in out
    assert re.search(rb"\r\x1b\[Kupload: [\d.]+ MiB / 16.\d MiB \(\d+%\), [\d.]+ [KMG]?i?B/s", err), err[-400:]


# ---- DSN -------------------------------------------------------------------------------

def test_dsn_parameters_reach_postfix(smtpc_bin, tmp_path, postfix):
    r = send_plain(smtpc_bin, tmp_path, postfix.port, "--to", "dsn@example.net", "--subject", "dsn",
                   "--text", "x", "--dsn-notify", "success,failure", "--dsn-ret", "hdrs",
                   "--envid", "ENV-42+x", "--trace")
    assert r.returncode == 0, r.stderr
    assert re.search(rb"C: MAIL FROM:<sender@example.org>.* RET=HDRS ENVID=ENV-42\+2Bx", r.stderr), r.stderr
    assert b"NOTIFY=SUCCESS,FAILURE" in r.stderr
    msgs = postfix.wait_for(2)  # the message and the "delivered" notification to the sender
    dsn = [m for m in msgs if m.rcpt_to == FROM]
    assert dsn, [m.rcpt_to for m in msgs]
    raw = dsn[0].raw
    assert b"Original-Envelope-Id: ENV-42+x" in raw, raw.decode()  # ENVID (xtext decoded by Postfix)
    assert b"Action: delivered" in raw  # NOTIFY=SUCCESS
    assert b"text/rfc822-headers" in raw and b"\nx\n" not in raw.split(b"text/rfc822-headers", 1)[1]  # RET=HDRS


def test_dsn_to_a_server_without_dsn(smtpc_bin, tmp_path, aiosmtpd):
    srv = aiosmtpd()
    r = send_plain(smtpc_bin, tmp_path, srv.port, "--to", "b@example.org", "--text", "x",
                   "--dsn-notify", "never")
    assert r.returncode == 69, r.stderr
    assert b"DSN" in r.stderr and srv.envelopes == []
    assert b"leave out --dsn-notify" in r.stderr
    # sendmail -N is passed blindly by callers: dropped for such a server
    r = run(smtpc_bin, tmp_path, "sendmail", "-N", "success", "-i", "b@example.org",
            input=b"Subject: s\n\nbody\n",
            env=env_for(tmp_path, SMTPC_SERVER=f"127.0.0.1:{srv.port}", SMTPC_TLS="none"))
    assert r.returncode == 0, r.stderr
    assert len(srv.envelopes) == 1 and srv.envelopes[0].rcpt_options == [[]]


@pytest.mark.parametrize("opt,val", [("--dsn-notify", "never,success"), ("--dsn-notify", "sometimes"),
                                     ("--dsn-ret", "body"), ("--envid", "has space")])
def test_dsn_values_checked(smtpc_bin, tmp_path, opt, val):
    r = run(smtpc_bin, tmp_path, "send", "--server", "127.0.0.1:1", "--tls", "none", "--from", FROM,
            "--to", "b@example.org", "--text", "x", opt, val)
    assert r.returncode == 64 and opt.encode() in r.stderr


# ---- --trace ---------------------------------------------------------------------------

def test_trace_timestamps_headers_only_and_trace_body(smtpc_bin, tmp_path, aiosmtpd):
    srv = aiosmtpd()
    r = send_plain(smtpc_bin, tmp_path, srv.port, "--to", "b@example.org", "--subject", "traced",
                   "--text", "SECRET-BODY-LINE", "--trace")
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    assert all(re.match(TS + rb" (C:|S:|\*) ", line) for line in lines), lines
    assert re.search(TS + rb" S: 220 ", r.stderr) and re.search(TS + rb" C: EHLO ", r.stderr)
    assert re.search(TS + rb" C: Subject: traced$", r.stderr, re.M)
    assert b"SECRET-BODY-LINE" not in r.stderr
    assert re.search(rb"C: \[message body: \d+ bytes not shown; --trace-body shows them\]", r.stderr)
    assert r.stdout.startswith(b"sent to 1 recipient")  # the report stays on stdout
    r = send_plain(smtpc_bin, tmp_path, srv.port, "--to", "b@example.org", "--subject", "traced",
                   "--text", "SECRET-BODY-LINE", "--trace-body")
    assert r.returncode == 0, r.stderr
    assert re.search(TS + rb" C: SECRET-BODY-LINE$", r.stderr, re.M)
    assert b"not shown" not in r.stderr


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_trace_never_shows_the_password(smtpc_bin, tmp_path, postfix, mech):
    pw = postfix.users["alice"]
    r = pf_send(smtpc_bin, tmp_path, postfix, "--to", "b@example.net", "--text", "x", "--auth", mech,
                "--trace-body", "--json")
    assert r.returncode == 0, r.stderr
    out = r.stdout + r.stderr
    for secret in (pw.encode(), base64.b64encode(pw.encode()), base64.b64encode(b"\0alice\0" + pw.encode()),
                   base64.b64encode(b"alice\0alice\0" + pw.encode())):
        assert secret not in out
    if mech == "PLAIN":
        assert re.search(TS + rb" C: AUTH PLAIN \*{8}$", r.stderr, re.M), r.stderr
    else:
        assert re.search(TS + rb" C: AUTH LOGIN", r.stderr)
        assert len(re.findall(TS + rb" C: \*{8}$", r.stderr, re.M)) >= 1
    postfix.wait_for(1)


def test_trace_never_shows_a_long_xoauth2_token(smtpc_bin, tmp_path, scripted):
    token = "ya29." + "Tk" * 1200
    (tmp_path / "tok").write_text(token + "\n")
    srv = scripted([
        ("send", b"220 hi\r\n"), ("expect", rb"^EHLO "), ("send", b"250-hi\r\n250 AUTH XOAUTH2\r\n"),
        ("expect", rb"^AUTH XOAUTH2$"), ("send", b"334 \r\n"), ("expect", rb"^[A-Za-z0-9+/=]{2000,}$"),
        ("send", b"235 2.7.0 ok\r\n"),
        ("expect", rb"^MAIL FROM:"), ("send", b"250 ok\r\n"), ("expect", rb"^RCPT TO:"),
        ("send", b"250 ok\r\n"), ("expect", rb"^DATA$"), ("send", b"354 go\r\n"),
        ("expect_data",), ("send", b"250 queued as X1\r\n"), ("expect", rb"^QUIT$"),
        ("send", b"221 bye\r\n"), ("close",)])
    r = send_plain(smtpc_bin, tmp_path, srv.port, "--to", "b@example.org", "--text", "x", "--user",
                   "alice@example.org", "--oauth-token-cmd", "cat tok", "--auth", "XOAUTH2",
                   "--allow-plaintext-auth", "--trace", "--json")
    srv.wait()
    assert r.returncode == 0, r.stderr
    assert srv.errors == []
    out = r.stdout + r.stderr
    sent = base64.b64encode(f"user=alice@example.org\x01auth=Bearer {token}\x01\x01".encode())
    assert sent in srv.received  # the server got it ...
    assert sent not in out and token.encode() not in out and token[:40].encode() not in out  # ... no one else
    assert sent[:60] not in out
    assert re.search(TS + rb" C: \*{8}$", r.stderr, re.M)
    assert json.loads(r.stdout)["auth"] == "XOAUTH2"


# ---- hints and escaping ----------------------------------------------------------------

def test_wrong_password_hint_and_exit_77(smtpc_bin, tmp_path, postfix):
    r = pf_send(smtpc_bin, tmp_path, postfix, "--to", "b@example.net", "--text", "x", password="wrong")
    assert r.returncode == 77, r.stderr
    err = r.stderr.decode()
    assert "535" in err and "check the user name and password" in err and "--auth LOGIN" in err
    r = pf_send(smtpc_bin, tmp_path, postfix, "--to", "b@example.net", "--text", "x", "--json",
                password="wrong")
    o = json.loads(r.stdout)
    assert o["error"]["class"] == "config" or o["error"]["exit"] == 77
    assert "user name and password" in o["error"]["hint"]
    assert o["final"]["code"] == 535 and o["final"]["enhanced"] == "5.7.8"


def test_certificate_hint_never_insecure_first(smtpc_bin, tmp_path, postfix):
    r = run(smtpc_bin, tmp_path, "send", "--server", f"localhost:{postfix.submission_port}", "--tls",
            "starttls", "--from", FROM, "--to", "b@example.net", "--text", "x")
    assert r.returncode == 76, r.stderr
    assert b"--ca-file" in r.stderr and b"--insecure" not in r.stderr


@pytest.mark.parametrize("who,code,hint", [("reject", 69, "check the recipient address"),
                                           ("tempfail", 75, "try again later")])
def test_refusal_hints(smtpc_bin, tmp_path, postfix, who, code, hint):
    r = send_plain(smtpc_bin, tmp_path, postfix.port, "--to", f"{who}@example.net", "--text", "x")
    assert r.returncode == code, r.stderr
    assert hint.encode() in r.stderr


def test_starttls_not_offered_hint(smtpc_bin, tmp_path, aiosmtpd):
    srv = aiosmtpd()
    r = run(smtpc_bin, tmp_path, "send", "--server", f"127.0.0.1:{srv.port}", "--tls", "starttls",
            "--from", FROM, "--to", "b@example.org", "--text", "x")
    assert r.returncode == 76, r.stderr
    assert b"--tls none only if you trust the network" in r.stderr


def test_timeout_hint_and_exit_75(smtpc_bin, tmp_path, scripted):
    srv = scripted([("sleep", 5)])
    t0 = time.monotonic()
    r = send_plain(smtpc_bin, tmp_path, srv.port, "--to", "b@example.org", "--text", "x",
                   "--greeting-timeout", "1s")
    assert r.returncode == 75, r.stderr
    assert time.monotonic() - t0 < 4.5
    assert b"--timeout" in r.stderr


@pytest.mark.parametrize("where", ["greeting", "mail", "end-of-data"])
def test_timeout_option_applies_everywhere(smtpc_bin, tmp_path, scripted, where):
    steps = [("send", b"220 hi\r\n"), ("expect", rb"^EHLO "), ("send", b"250 hi\r\n"),
             ("expect", rb"^MAIL FROM:")]
    if where == "greeting":
        steps = [("sleep", 6)]
    elif where == "end-of-data":
        steps += [("send", b"250 ok\r\n"), ("expect", rb"^RCPT TO:"), ("send", b"250 ok\r\n"),
                  ("expect", rb"^DATA$"), ("send", b"354 go\r\n"), ("expect_data",), ("sleep", 6)]
    else:
        steps += [("sleep", 6)]
    srv = scripted(steps)
    t0 = time.monotonic()
    r = send_plain(smtpc_bin, tmp_path, srv.port, "--to", "b@example.org", "--text", "x", "--timeout", "1",
                   "--connect-timeout", "5")
    took = time.monotonic() - t0
    assert r.returncode == 75, r.stderr
    assert 0.9 < took < 5, took
    if where == "end-of-data":
        assert b"may have been delivered" in r.stderr  # the outcome is unknown
    else:
        assert b"--timeout" in r.stderr


def test_connect_timeout(smtpc_bin, tmp_path):
    # a listener that never accepts, its queue full: the SYN goes unanswered
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(0)
    port = lsock.getsockname()[1]
    fill = []
    for _ in range(3):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fill.append(s)
    time.sleep(0.3)
    t0 = time.monotonic()
    r = send_plain(smtpc_bin, tmp_path, port, "--to", "b@example.org", "--text", "x", "--connect-timeout", "1",
                   "--timeout", "30")
    took = time.monotonic() - t0
    for s in fill + [lsock]:
        s.close()
    if r.returncode == 0 or b"timed out" not in r.stderr:
        pytest.skip("this kernel answered the SYN: no way to make connect hang on loopback")
    assert r.returncode == 75 and 0.9 < took < 8, (took, r.stderr)
    assert b"--connect-timeout" in r.stderr


def test_server_text_is_escaped(smtpc_bin, tmp_path, scripted):
    evil = b"550 5.1.1 no \x1b[31mRED\x1b[0m \x07 here\r\n"
    srv = scripted([
        ("send", b"220 hi \x1b]0;title\x07\r\n"), ("expect", rb"^EHLO "), ("send", b"250 hi\r\n"),
        ("expect", rb"^MAIL FROM:"), ("send", b"250 ok\r\n"), ("expect", rb"^RCPT TO:"),
        ("send", evil), ("expect", rb"^RSET$"), ("send", b"250 ok\r\n"), ("expect", rb"^QUIT$"),
        ("send", b"221 bye\r\n"), ("close",)], connections=2)
    r = send_plain(smtpc_bin, tmp_path, srv.port, "--to", "b@example.org", "--text", "x", "--trace")
    assert r.returncode == 69, r.stderr
    for stream in (r.stdout, r.stderr):
        assert b"\x1b" not in stream and b"\x07" not in stream
    assert b"RED" in r.stderr and b"check the recipient address" in r.stderr
    r = send_plain(smtpc_bin, tmp_path, srv.port, "--to", "b@example.org", "--text", "x", "--json")
    srv.wait()
    assert r.returncode == 69 and b"\x1b" not in r.stdout
    assert json.loads(r.stdout)["recipients"][0]["text"] == "5.1.1 no \x1b[31mRED\x1b[0m \x07 here"


# ---- exit statuses (sysexits.h) --------------------------------------------------------

def test_exit_statuses(smtpc_bin, tmp_path, scripted, aiosmtpd):
    base = ["send", "--from", FROM, "--to", "b@example.org", "--text", "x"]
    assert run(smtpc_bin, tmp_path, "send", "--bogus").returncode == 64
    assert run(smtpc_bin, tmp_path, "send", "--from", FROM, "--to", "not an address",
               "--text", "x").returncode == 65
    assert run(smtpc_bin, tmp_path, "send", "--from", FROM, "--to", "b@example.org", "--message",
               "no-such-file.eml").returncode == 66
    assert run(smtpc_bin, tmp_path, *base, "--server", "no-such-host.invalid", "--tls",
               "none").returncode == 68
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro" / "x").write_text("a file where a directory should be")
    assert run(smtpc_bin, tmp_path, *base, "--pickup-dir", "ro/x").returncode == 74
    (tmp_path / "bad.conf").write_text("this is not = \n[[[ a configuration\n")
    assert run(smtpc_bin, tmp_path, *base, "--config", "bad.conf").returncode == 78
    # 76: the server broke the protocol
    srv = scripted([("send", b"220 hi\r\n"), ("expect", rb"^EHLO "), ("send", b"hello there\r\n")])
    r = send_plain(smtpc_bin, tmp_path, srv.port, "--to", "b@example.org", "--text", "x")
    assert r.returncode == 76, r.stderr
    assert b"--trace" in r.stderr  # the hint: look at the dialogue
    # 69 and 75: refusals
    a = aiosmtpd(refuse={"bad@example.org"}, tempfail={"later@example.org"})
    assert send_plain(smtpc_bin, tmp_path, a.port, "--to", "bad@example.org", "--text",
                      "x").returncode == 69
    assert send_plain(smtpc_bin, tmp_path, a.port, "--to", "later@example.org", "--text",
                      "x").returncode == 75


# ---- --json schema ---------------------------------------------------------------------

def check_schema(o, delivery):
    """Every field documented in smtpc(1) JSON OUTPUT, with its type."""
    assert set(o) >= {"ok", "delivery", "server", "tls", "auth", "recipients", "final", "path", "error"}
    assert isinstance(o["ok"], bool) and o["delivery"] == delivery
    assert o["server"] is None or isinstance(o["server"], str)
    if o["tls"] is not None:
        assert set(o["tls"]) == {"version", "cipher", "verified", "mode"}
        assert o["tls"]["version"].startswith("TLSv1.") and o["tls"]["cipher"]
        assert isinstance(o["tls"]["verified"], bool) and o["tls"]["mode"] in ("starttls", "tls")
    assert o["auth"] is None or isinstance(o["auth"], str)
    assert isinstance(o["recipients"], list) and o["recipients"]
    for x in o["recipients"]:
        assert set(x) == {"address", "code", "enhanced", "text", "accepted"}
        assert isinstance(x["address"], str) and isinstance(x["accepted"], bool)
        assert x["code"] is None or isinstance(x["code"], int)
    if o["final"] is not None:
        assert set(o["final"]) == {"code", "enhanced", "text", "queue_id"}
        assert isinstance(o["final"]["code"], int)
    assert o["path"] is None or isinstance(o["path"], str)
    if o["ok"]:
        assert o["error"] is None
    else:
        assert set(o["error"]) == {"class", "code", "exit", "message", "hint"}
        assert o["error"]["class"] in ("transient", "permanent", "canceled", "config", "protocol", "unknown")


def test_json_schema_every_delivery_kind(smtpc_bin, tmp_path, postfix):
    # smtp, with TLS and AUTH
    r = pf_send(smtpc_bin, tmp_path, postfix, "--to", "b@example.net", "--text", "x", "--json")
    assert r.returncode == 0, r.stderr
    o = json.loads(r.stdout)
    check_schema(o, "smtp")
    assert o["server"] == f"localhost:{postfix.submission_port}" and o["path"] is None
    assert o["tls"]["verified"] is True and o["tls"]["mode"] == "starttls" and o["auth"]
    assert o["recipients"][0] == {"address": "b@example.net", "code": 250, "enhanced": "2.1.5",
                                  "text": o["recipients"][0]["text"], "accepted": True}
    assert o["final"]["code"] == 250 and o["final"]["enhanced"] == "2.0.0" and o["final"]["queue_id"]
    # the one-line report says the same
    r = pf_send(smtpc_bin, tmp_path, postfix, "--to", "b@example.net", "--text", "x")
    assert re.match(rb"sent to 1 recipient via localhost:\d+ \(TLSv1\.[23], AUTH [A-Z0-9-]+\), queued as \w+\n$",
                    r.stdout), r.stdout
    postfix.wait_for(2)
    # smtp, plain, refused
    r = send_plain(smtpc_bin, tmp_path, postfix.port, "--to", "reject@example.net", "--text", "x", "--json")
    o = json.loads(r.stdout)
    check_schema(o, "smtp")
    assert o["tls"] is None and o["auth"] is None and o["ok"] is False
    assert o["recipients"][0]["code"] == 550 and o["recipients"][0]["enhanced"] == "5.1.1"
    assert o["error"]["exit"] == 69 and o["error"]["hint"]
    # pickup
    r = run(smtpc_bin, tmp_path, "send", "--from", FROM, "--to", "b@example.org", "--text", "x",
            "--pickup-dir", "pk", "--json")
    o = json.loads(r.stdout)
    check_schema(o, "pickup")
    assert o["ok"] and o["server"] is None and o["tls"] is None and o["final"] is None
    assert o["path"].startswith("pk/") and os.path.exists(tmp_path / o["path"])
    # outbox
    r = run(smtpc_bin, tmp_path, "send", "--from", FROM, "--to", "b@example.org", "--text", "x",
            "--outbox", "ob", "--json")
    o = json.loads(r.stdout)
    check_schema(o, "outbox")
    assert o["ok"] and o["server"] is None and o["tls"] is None and o["final"] is None
    assert os.path.exists(tmp_path / o["path"])


def test_json_schema_is_documented(smtpc_bin):
    man = open(os.path.join(os.path.dirname(__file__), "..", "..", "docs", "smtpc.1")).read()
    sect = man.split(".Sh JSON OUTPUT", 1)[1].split("\n.Sh ", 1)[0]
    for field in ("ok", "delivery", "server", "tls", "version", "cipher", "verified", "mode", "auth",
                  "recipients", "address", "code", "enhanced", "text", "accepted", "final", "queue_id",
                  "path", "error", "class", "exit", "message", "hint"):
        assert re.search(r"\.It Li " + field + r"\b", sect), field


# ---- probe ------------------------------------------------------------------------------

def test_probe_features_in_plain_words(smtpc_bin, tmp_path, postfix):
    r = run(smtpc_bin, tmp_path, "probe", "--server", f"127.0.0.1:{postfix.port}", "--tls", "none")
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert "size: messages up to 10240000 bytes" in out
    for words in ("pipelining: commands are sent in groups", "chunking: BDAT offered",
                  "8bitmime: 8-bit text is taken as is", "smtputf8: internationalized",
                  "dsn: delivery notifications", "enhancedstatuscodes: replies carry detailed codes",
                  "requiretls: no REQUIRETLS"):
        assert words in out, words
    r = run(smtpc_bin, tmp_path, "probe", "--server", f"127.0.0.1:{postfix.port}", "--tls", "none", "--json")
    f = json.loads(r.stdout)["features"]
    assert f == {"size": 10240000, "pipelining": True, "chunking": True, "8bitmime": True, "smtputf8": True,
                 "dsn": True, "enhancedstatuscodes": True, "requiretls": False, "starttls": False}


def test_probe_auth_test(smtpc_bin, tmp_path, postfix):
    base = ["probe", "--server", f"localhost:{postfix.submission_port}", "--ca-file", postfix.ca_file,
            "--user", "alice", "--password-env", "PW", "--auth-test"]
    r = run(smtpc_bin, tmp_path, *base, env=env_for(tmp_path, PW=postfix.users["alice"]))
    assert r.returncode == 0, r.stderr
    assert re.search(rb"auth test: OK, logged in as alice with [A-Z0-9-]+ \(no mail sent\)", r.stdout)
    r = run(smtpc_bin, tmp_path, *base, env=env_for(tmp_path, PW="wrong"))
    assert r.returncode == 77
    assert b"auth test FAILED" in r.stderr and b"user name and password" in r.stderr
    r = run(smtpc_bin, tmp_path, *base, "--json", env=env_for(tmp_path, PW="wrong"))
    assert json.loads(r.stdout)["auth_test"] is False
    r = run(smtpc_bin, tmp_path, "probe", "--server", f"localhost:{postfix.submission_port}", "--auth-test")
    assert r.returncode == 64 and b"needs credentials" in r.stderr
    assert postfix.settle() == []


# ---- sendmail through mail(1) ----------------------------------------------------------

def mail_setup(smtpc_bin, tmp_path, conf):
    if not shutil.which("mail"):
        pytest.skip("mail(1) not installed (bsd-mailx)")
    (tmp_path / "bin").mkdir()
    os.symlink(smtpc_bin, tmp_path / "bin" / "sendmail")
    (tmp_path / "smtpc.conf").write_text(conf)
    (tmp_path / "mailrc").write_text(f"set sendmail={tmp_path}/bin/sendmail\n")
    env = env_for(tmp_path, SMTPC_CONFIG=str(tmp_path / "smtpc.conf"), MAILRC=str(tmp_path / "mailrc"))
    return env


def test_mail_command_through_the_sendmail_link_plain(smtpc_bin, tmp_path, aiosmtpd):
    srv = aiosmtpd()
    env = mail_setup(smtpc_bin, tmp_path, f"server = 127.0.0.1:{srv.port}\ntls = none\nfrom = me@example.org\n")
    r = subprocess.run(["mail", "-s", "hi", "user@example.org"], input=b"body\n", cwd=tmp_path,
                       capture_output=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    [e] = srv.envelopes
    assert e.mail_from == "me@example.org" and e.rcpt_tos == ["user@example.org"]
    assert b"Subject: hi" in e.data and e.data.endswith(b"\r\n\r\nbody\r\n")


def test_mail_command_through_the_sendmail_link_starttls_auth(smtpc_bin, tmp_path, postfix):
    env = mail_setup(smtpc_bin, tmp_path,
                     f"server = localhost:{postfix.submission_port}\ntls = starttls\n"
                     f"ca-file = {postfix.ca_file}\nuser = alice\npassword-env = PW\nfrom = {FROM}\n")
    env["PW"] = postfix.users["alice"]
    r = subprocess.run(["mail", "-s", "hi there", "user@example.net"], input=b"body over tls\n",
                       cwd=tmp_path, capture_output=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    [m] = postfix.wait_for(1)
    assert m.mail_from == FROM and m.rcpt_to == "user@example.net"
    assert b"Subject: hi there" in m.original and b"body over tls" in m.original
    assert "TLS" in m.received


def test_queue_list_escapes_the_last_error(smtpc_bin, tmp_path, scripted):
    r = run(smtpc_bin, tmp_path, "send", "--from", FROM, "--to", "b@example.org", "--text", "x",
            "--outbox", "ob")
    assert r.returncode == 0, r.stderr
    srv = scripted([
        ("send", b"220 hi\r\n"), ("expect", rb"^EHLO "), ("send", b"250 hi\r\n"),
        ("expect", rb"^MAIL FROM:"), ("send", b"250 ok\r\n"), ("expect", rb"^RCPT TO:"),
        ("send", b"451 4.3.0 busy \x1b[31mRED\x1b[0m\x07\r\n"), ("expect", rb"^RSET$"),
        ("send", b"250 ok\r\n"), ("expect", rb"^QUIT$"), ("send", b"221 bye\r\n"), ("close",)])
    r = run(smtpc_bin, tmp_path, "queue", "flush", "--outbox", "ob", "--server", f"127.0.0.1:{srv.port}",
            "--tls", "none")
    srv.stop()
    assert b"\x1b" not in r.stdout + r.stderr
    r = run(smtpc_bin, tmp_path, "queue", "list", "--outbox", "ob")
    assert r.returncode == 0, r.stderr
    assert b"RED" in r.stdout and b"\x1b" not in r.stdout and b"\x07" not in r.stdout


def test_sendmail_takes_messages_smtpc_message_load_refuses(smtpc_bin, tmp_path, aiosmtpd):
    """Why sendmail keeps the CLI's header reader: cron and scripts pipe
    messages with no To/Cc/Bcc and no From (recipients on the command
    line), which smtpc_message_load rejects ("no recipient in To, Cc or
    Bcc", "no From")."""
    srv = aiosmtpd()
    env = env_for(tmp_path, SMTPC_SERVER=f"127.0.0.1:{srv.port}", SMTPC_TLS="none")
    r = run(smtpc_bin, tmp_path, "sendmail", "-f", FROM, "root@example.org",
            input=b"Subject: cron <root@host> backup\n\nall good\n", env=env)
    assert r.returncode == 0, r.stderr
    [e] = srv.envelopes
    assert e.mail_from == FROM and e.rcpt_tos == ["root@example.org"]
    assert b"\r\nFrom: sender@example.org\r\n" in b"\r\n" + e.data and b"Date: " in e.data
    assert e.data.endswith(b"Subject: cron <root@host> backup\r\n\r\nall good\r\n")


def test_sendmail_trace(smtpc_bin, tmp_path, aiosmtpd):
    srv = aiosmtpd()
    env = env_for(tmp_path, SMTPC_SERVER=f"127.0.0.1:{srv.port}", SMTPC_TLS="none")
    r = run(smtpc_bin, tmp_path, "sendmail", "--trace", "-i", "b@example.org",
            input=b"Subject: s\n\nhidden body\n", env=env)
    assert r.returncode == 0, r.stderr
    assert re.search(TS + rb" C: MAIL FROM:<", r.stderr) and re.search(TS + rb" C: Subject: s$", r.stderr, re.M)
    assert b"hidden body" not in r.stderr and r.stdout == b""
