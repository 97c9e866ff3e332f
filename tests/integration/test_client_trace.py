"""The client's protocol trace (smtpc_client_set_trace, _set_trace_body),
upload progress (smtpc_client_set_progress), the certificate verdict and the
protection on the result (smtpc_result_tls_verified, _security_used), and
SIZE/BODY for a callback body (smtpc_send_params.size, .body_8bit): from C
(drv_client_trace) and through smtpc send, whose single copy goes through the
client."""
import json
import os
import ssl
import subprocess
import threading

import pytest
from aiosmtpd.controller import Controller

from conftest import driver
from servers.aiosmtpd_server import aiosmtpd, free_port  # noqa: F401
from servers.certs import certs  # noqa: F401
from servers.scripted import scripted  # noqa: F401


def drv(port, *args, host="127.0.0.1"):
    p = subprocess.run([driver("client_trace"), host, str(port), *args], capture_output=True, timeout=120)
    out = p.stdout.decode()
    assert p.returncode == 0, p.stderr.decode() + out
    lines = out.splitlines()
    res = dict(kv.split("=", 1) for kv in next(ln for ln in lines if ln.startswith("R ")).split()[1:])
    trace = [(ln[2], ln[4:]) for ln in lines if ln.startswith("T ")]
    progress = [tuple(int(x) for x in ln.split()[1:]) for ln in lines if ln.startswith("P ")]
    after_free = lines[lines.index("F") + 1:] if "F" in lines else None
    before_free = lines[:lines.index("F")]
    return res, trace, progress, before_free, after_free, out


def test_trace_shows_the_dialogue_and_the_quit(aiosmtpd):
    srv = aiosmtpd(pipelining=True)
    res, trace, progress, before, _, out = drv(srv.port)
    assert res["rc"] == "SMTPC_OK" and res["security"] == "none" and res["verified"] == "0", out
    sent = [t for d, t in trace if d == "S"]
    got = [t for d, t in trace if d == "R"]
    assert sent[0].startswith("EHLO ") and "MAIL FROM:<a@example.org>" in sent[1]
    assert "RCPT TO:<b@example.org>" in sent and "DATA" in sent and "." in sent
    assert got[0].startswith("220") and any(t.startswith("250") for t in got)
    # smtpc_client_free QUITs the private pool's connection: traced too
    assert sent[-1] == "QUIT" and got[-1].startswith("221")
    r_at = next(k for k, ln in enumerate(before) if ln.startswith("R "))
    assert "T S QUIT" in before[r_at:], out  # ... at the free, after the send's result
    # no message lines without set_trace_body
    assert not any(d == "B" for d, _ in trace)
    assert len(srv.envelopes) == 1
    # progress: the message's size, reached at the end
    assert progress and progress[-1][0] == progress[-1][1] == len(srv.envelopes[0].data), (progress, out)


def test_trace_body_lines_before_dot_stuffing(aiosmtpd):
    srv = aiosmtpd(pipelining=True)
    res, trace, _, _, _, out = drv(srv.port, "--trace-body", "--text", r"first\n.dotted\nlast")
    assert res["rc"] == "SMTPC_OK", out
    body = [t for d, t in trace if d == "B"]
    assert "Subject: traced" in body and "" in body, body
    i = body.index("")
    assert body[i + 1:i + 4] == ["first", ".dotted", "last"], body
    # the body lines come between DATA's 354 and the final dot
    kinds = [(d, t) for d, t in trace]
    first_b = next(k for k, (d, _) in enumerate(kinds) if d == "B")
    dot = kinds.index(("S", "."))
    assert first_b < dot and all(d == "B" for d, _ in kinds[first_b:dot])
    assert srv.envelopes[0].data.endswith(b"first\r\n.dotted\r\nlast\r\n")


def test_no_trace_no_lines(aiosmtpd):
    srv = aiosmtpd(pipelining=True)
    res, trace, progress, _, _, out = drv(srv.port, "--no-trace", "--trace-body")
    assert res["rc"] == "SMTPC_OK" and trace == [] and progress, out


def test_shared_pool_connection_untraced_after_the_client(aiosmtpd):
    # the connection goes back to a shared pool: its QUIT (at smtpc_pool_free)
    # belongs to no client and is not traced
    srv = aiosmtpd(pipelining=True)
    res, trace, _, before, after, out = drv(srv.port, "--shared-pool")
    assert res["rc"] == "SMTPC_OK", out
    assert after == [] and not any(t == "QUIT" for _, t in trace), out


def script(mail_re, data=True):
    steps = [("send", b"220 hi\r\n"), ("expect", rb"^EHLO "),
             ("send", b"250-hi\r\n250-SIZE 100000\r\n250-8BITMIME\r\n250 PIPELINING\r\n"),
             ("expect", mail_re), ("expect", rb"^RCPT TO:<b@example\.org>$"), ("expect", rb"^DATA$"),
             ("send", b"250 ok\r\n250 ok\r\n354 go\r\n")]
    if data:
        steps += [("expect_data",), ("send", b"250 queued as Q1\r\n"), ("expect", rb"^QUIT$"),
                  ("send", b"221 bye\r\n"), ("close",)]
    return steps


def test_callback_body_size_and_8bit_declared(scripted):
    # a body the client cannot measure: SIZE= and BODY=8BITMIME as the caller says
    srv = scripted(script(rb"^MAIL FROM:<a@example\.org> SIZE=4321 BODY=8BITMIME$"))
    res, trace, progress, _, _, out = drv(srv.port, "--raw-cb", "--raw-size", "4321", "--raw-8bit",
                                          "--trace-body", "--text", r"caf\u00e9 line")
    srv.wait()
    assert srv.errors == [] and res["rc"] == "SMTPC_OK", (srv.errors, out)
    # the callback's pieces (7 bytes) joined into lines for the trace
    assert [t for d, t in trace if d == "B"] == ["Subject: raw", "", r"caf\u00e9 line"], trace
    assert progress[-1][1] == 4321  # the declared size is the progress total
    # without them: neither parameter
    srv = scripted(script(rb"^MAIL FROM:<a@example\.org>$"))
    res, _, progress, _, _, out = drv(srv.port, "--raw-cb", "--raw-size", "0")
    srv.wait()
    assert srv.errors == [] and res["rc"] == "SMTPC_OK", (srv.errors, out)
    assert progress[-1][1] == 0


# ---- TLS: the certificate verdict, from the result ------------------------------------

@pytest.fixture
def self_signed_tls(certs):
    """aiosmtpd with STARTTLS and a self-signed certificate."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(certs.self_signed.cert, certs.self_signed.key)

    class H:
        def __init__(self):
            self.lock = threading.Lock()
            self.n = 0

        async def handle_DATA(self, server, session, envelope):
            with self.lock:
                self.n += 1 if session.ssl is not None else 0
            return "250 OK queued as TLS1"

    h = H()
    port = free_port("127.0.0.1")
    c = Controller(h, hostname="127.0.0.1", port=port, tls_context=ctx, require_starttls=True,
                   ready_timeout=30)
    c.start()
    h.port = port
    h.cert = certs.self_signed.cert
    yield h
    c.stop()


def test_result_tls_verified_from_c(self_signed_tls):
    h = self_signed_tls
    res, trace, _, _, _, out = drv(h.port, "--tls", "starttls", "--ca-file", h.cert, host="localhost")
    assert res["rc"] == "SMTPC_OK" and res["verified"] == "1", out
    assert res["security"] == "starttls" and res["version"].startswith("TLSv1."), out
    assert any(d == "I" for d, _ in trace)  # the handshake's INFO line
    res, _, _, _, _, out = drv(h.port, "--tls", "starttls", "--insecure", host="localhost")
    assert res["rc"] == "SMTPC_OK" and res["verified"] == "0" and res["security"] == "starttls", out
    # without either: refused, nothing verified
    res, _, _, _, _, out = drv(h.port, "--tls", "starttls", host="localhost")
    assert res["rc"] == "SMTPC_ETLS" and res["verified"] == "0", out
    assert h.n == 2


def cli_send(smtpc_bin, tmp_path, port, *args):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMTPC_")}
    env.update(HOME=str(tmp_path), SMTPC_CONFIG="/dev/null")
    return subprocess.run([smtpc_bin, "send", "--server", f"localhost:{port}", "--tls", "starttls",
                           "--from", "a@example.org", "--to", "b@example.org", "--text", "x", *args],
                          capture_output=True, timeout=120, env=env, cwd=tmp_path)


def test_cli_certificate_verified_line(self_signed_tls, smtpc_bin, tmp_path):
    h = self_signed_tls
    r = cli_send(smtpc_bin, tmp_path, h.port, "--ca-file", h.cert)
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert out.startswith(f"sent to 1 recipient via localhost:{h.port} (TLSv1.") and "NOT verified" not in out, out
    assert "queued as TLS1" in out
    r = cli_send(smtpc_bin, tmp_path, h.port, "--insecure")
    assert r.returncode == 0, r.stderr
    assert b", certificate NOT verified)" in r.stdout, r.stdout
    o = json.loads(cli_send(smtpc_bin, tmp_path, h.port, "--insecure", "--json").stdout)
    assert o["tls"]["verified"] is False and o["tls"]["mode"] == "starttls" and o["ok"]
    o = json.loads(cli_send(smtpc_bin, tmp_path, h.port, "--ca-file", h.cert, "--json").stdout)
    assert o["tls"]["verified"] is True and o["tls"]["mode"] == "starttls" and o["ok"]
    # no trust: refused before anything is sent, exit 76 (EX_PROTOCOL)
    r = cli_send(smtpc_bin, tmp_path, h.port)
    assert r.returncode == 76, r.stderr
    assert h.n == 4


def test_cli_single_send_trace_through_the_client(aiosmtpd, smtpc_bin, tmp_path):
    srv = aiosmtpd(pipelining=True)
    r = subprocess.run([smtpc_bin, "send", "--server", f"127.0.0.1:{srv.port}", "--tls", "none",
                        "--from", "a@example.org", "--to", "b@example.org", "--subject", "hi",
                        "--text", "SECRET-LINE", "--trace"], capture_output=True, timeout=120,
                       cwd=tmp_path, env=dict(os.environ, HOME=str(tmp_path), SMTPC_CONFIG="/dev/null"))
    err = r.stderr.decode()
    assert r.returncode == 0, err
    lines = [ln.split(" ", 1)[1] for ln in err.splitlines()]
    for want in ("S: 220", "C: EHLO", "C: MAIL FROM:<a@example.org>", "C: RCPT TO:<b@example.org>",
                 "C: DATA", "C: Subject: hi", "C: .", "C: QUIT", "S: 221"):
        assert any(ln.startswith(want) for ln in lines), (want, err)
    assert "SECRET-LINE" not in err
    # the note on the body takes the body's place: before the final dot
    note = next(k for k, ln in enumerate(lines) if ln.startswith("C: [message body:"))
    assert lines[note + 1] == "C: .", err


def test_cli_connect_timeout_alone_leaves_the_greeting_its_default(scripted, smtpc_bin, tmp_path):
    # smtpc(1): --connect-timeout bounds reaching the server; the greeting
    # waits --greeting-timeout or --timeout (default 60 s), as before the
    # single send went through the client (whose default is the connect timeout)
    srv = scripted([("sleep", 2.0), ("send", b"220 late\r\n"), ("expect", rb"^EHLO "), ("send", b"250 hi\r\n"),
                    ("expect", rb"^MAIL FROM:"), ("send", b"250 ok\r\n"), ("expect", rb"^RCPT TO:"),
                    ("send", b"250 ok\r\n"), ("expect", rb"^DATA$"), ("send", b"354 go\r\n"), ("expect_data",),
                    ("send", b"250 queued as LATE\r\n"), ("expect", rb"^QUIT$"), ("send", b"221 bye\r\n"),
                    ("close",)])
    r = subprocess.run([smtpc_bin, "send", "--server", f"127.0.0.1:{srv.port}", "--tls", "none",
                        "--from", "a@example.org", "--to", "b@example.org", "--text", "x",
                        "--connect-timeout", "1s"], capture_output=True, timeout=120,
                       cwd=tmp_path, env=dict(os.environ, HOME=str(tmp_path), SMTPC_CONFIG="/dev/null"))
    srv.wait()
    assert r.returncode == 0 and b"queued as LATE" in r.stdout, r.stderr
    assert srv.errors == []
