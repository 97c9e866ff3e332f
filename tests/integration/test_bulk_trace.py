"""smtpc_bulk_set_trace: every connection's dialogue with its number, AUTH
redacted as the session's trace does (Postfix submission, PLAIN and LOGIN);
the CLI's --trace and --trace-body (smtpc_bulk_set_trace_body) with
--connections."""
import base64
import os
import re
import subprocess

from conftest import driver
from servers.aiosmtpd_server import aiosmtpd  # noqa: F401
from servers.postfix import postfix, postfix_server  # noqa: F401

TRACE = re.compile(r"^T (\d+) ([CS]) (.*)$", re.M)


def bulk(port, count, conns, *opts, ca=None):
    env = dict(os.environ, **({"DRV_CA": ca} if ca else {}))
    p = subprocess.run([driver("bulk"), "127.0.0.1", str(port), str(count), str(conns), *opts],
                       capture_output=True, timeout=120, env=env)
    out = p.stdout.decode()
    assert p.returncode == 0, p.stderr.decode() + out[-2000:]
    return out, [(int(m[1]), m[2], m[3]) for m in TRACE.finditer(out)]


def test_trace_each_connection_numbered_and_auth_redacted(postfix):
    for mech in ("PLAIN", "LOGIN"):
        pw = postfix.users["alice"]
        out, lines = bulk(postfix.submission_port, 4, 2, "--tls", "starttls", "--user", "alice",
                          "--password", pw, "--auth", mech, "--trace", ca=postfix.ca_file)
        assert out.count(" SENT ") == 4, out[-2000:]
        assert {n for n, _, _ in lines} == {1, 2}, out[-3000:]
        for n in (1, 2):
            sent = [t for c, d, t in lines if c == n and d == "C"]
            assert sent[0].startswith("EHLO ") and "STARTTLS" in sent
            # PLAIN: the initial response redacted; LOGIN: each continuation
            assert (f"AUTH {mech} ********" if mech == "PLAIN" else "AUTH LOGIN") in sent, sent
            assert any(t.startswith("220") for c, d, t in lines if c == n and d == "S")
        # which connection takes which message is the scheduler's choice
        assert sum(1 for _, d, t in lines if d == "C" and t.startswith("MAIL FROM:<sender@example.org>")) == 4
        # no form of the password anywhere
        secrets = [pw, base64.b64encode(pw.encode()).decode(),
                   base64.b64encode(b"\0alice\0" + pw.encode()).decode()]
        assert not any(s in out for s in secrets)
        if mech == "LOGIN":
            assert sum(1 for _, d, t in lines if d == "C" and t == "********") == 4  # user, password x 2


def test_no_trace_without_the_callback(aiosmtpd):
    srv = aiosmtpd(pipelining=True)
    out, lines = bulk(srv.port, 2, 2)
    assert lines == [] and out.count(" SENT ") == 2


def test_cli_trace_with_connections(aiosmtpd, smtpc_bin):
    srv = aiosmtpd(pipelining=True)
    p = subprocess.run([smtpc_bin, "send", "--server", f"127.0.0.1:{srv.port}", "--tls", "none",
                        "--from", "a@example.org", "--to", "b@example.org", "--text", "hello",
                        "--count", "4", "--connections", "2", "--trace"], capture_output=True, timeout=120)
    err = p.stderr.decode()
    assert p.returncode == 0, err
    assert len(srv.envelopes) == 4
    mails = re.findall(r"^\S+ \[(\d)\] C: MAIL FROM:<a@example\.org>", err, re.M)
    assert len(mails) == 4 and set(mails) <= {"1", "2"}, err
    assert re.search(r"^\S+ \[1\] S: 220", err, re.M) and re.search(r"^\S+ \[2\] S: 220", err, re.M), err
    assert "hello" not in err  # --trace: no message lines


def test_cli_trace_body_with_connections(aiosmtpd, smtpc_bin):
    # every line of each copy, numbered by the connection that sends it
    srv = aiosmtpd(pipelining=True)
    p = subprocess.run([smtpc_bin, "send", "--server", f"127.0.0.1:{srv.port}", "--tls", "none",
                        "--from", "a@example.org", "--to", "b@example.org", "--subject", "tb",
                        "--text", "first body line\n.dotted line", "--count", "4", "--connections", "2",
                        "--trace-body"], capture_output=True, timeout=120)
    err = p.stderr.decode()
    assert p.returncode == 0, err
    assert len(srv.envelopes) == 4
    body = re.findall(r"^\S+ \[(\d)\] C: first body line$", err, re.M)
    assert len(body) == 4 and set(body) <= {"1", "2"}, err
    # before dot-stuffing: the line as the message has it
    assert len(re.findall(r"^\S+ \[\d\] C: \.dotted line$", err, re.M)) == 4, err
    assert len(re.findall(r"^\S+ \[\d\] C: Subject: tb$", err, re.M)) == 4, err
    # each message's lines come from the connection that sent its MAIL FROM
    for n in set(body):
        mails = len(re.findall(rf"^\S+ \[{n}\] C: MAIL FROM:", err, re.M))
        assert body.count(n) == mails, err
