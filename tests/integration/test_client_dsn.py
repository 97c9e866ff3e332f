"""DSN (RFC 3461) and CHUNKING (RFC 3030) through the client: parameters
reach MAIL/RCPT when the server offers DSN, the policy when it does not,
BDAT when asked for and offered; checked on the wire (scripted server),
by aiosmtpd (no DSN) and by the private Postfix (DSN and CHUNKING)."""
import email
import email.policy
import re
import time

from client_servers import run, lines, kv
from servers.aiosmtpd_server import aiosmtpd  # noqa: F401
from servers.postfix import postfix, postfix_server  # noqa: F401
from servers.scripted import scripted  # noqa: F401

TWO = ["--to", "b@example.org", "--to", "c@example.org"]


def base(port):
    return ["--host", "127.0.0.1", "--port", str(port)]


def one_by_one(ehlo, body_steps):
    """Greeting, EHLO with `ehlo` keywords, MAIL and two RCPTs answered one
    by one (no PIPELINING), then body_steps, QUIT."""
    return [
        ("send", b"220 hi\r\n"),
        ("expect", rb"^EHLO "),
        ("send", b"250-hi\r\n" + b"".join(b"250-" + k + b"\r\n" for k in ehlo) + b"250 8BITMIME\r\n"),
        ("expect", rb"^MAIL FROM:"),
        ("send", b"250 ok\r\n"),
        ("expect", rb"^RCPT TO:"),
        ("send", b"250 ok\r\n"),
        ("expect", rb"^RCPT TO:"),
        ("send", b"250 ok\r\n"),
        *body_steps,
        ("expect", rb"^QUIT"),
        ("send", b"221 bye\r\n"),
        ("close",),
    ]


DATA_STEPS = [("expect", rb"^DATA$"), ("send", b"354 go\r\n"), ("expect_data",),
              ("send", b"250 2.0.0 Ok: queued as DATA1\r\n")]


def test_dsn_parameters_on_mail_and_each_rcpt(scripted):
    srv = scripted(one_by_one([b"DSN"], DATA_STEPS))
    p = run(base(srv.port) + TWO + ["--dsn-ret", "HDRS", "--dsn-envid", "env+id=1", "--dsn-notify", "FAILURE",
                                    "--rcpt-notify", "1=SUCCESS,DELAY", "--rcpt-orcpt", "1=orig@example.org"])
    assert p.returncode == 0, p.stdout + p.stderr
    srv.wait()
    assert srv.errors == []
    mail, r1, r2 = [l.decode() for l in srv.lines[1:4]]
    # ENVID is xtext: '+' and '=' are hex-encoded (RFC 3461 4).
    assert mail.endswith(" RET=HDRS ENVID=env+2Bid+3D1"), mail
    assert r1 == "RCPT TO:<b@example.org> NOTIFY=FAILURE"  # the send-wide NOTIFY
    assert r2 == "RCPT TO:<c@example.org> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;orig@example.org"


def test_dsn_parameters_through_send_async_and_bdat_together(scripted):
    srv = scripted(one_by_one([b"DSN", b"CHUNKING"], [("expect_bdat", b"250 2.0.0 Ok: queued as A1\r\n")]))
    p = run(base(srv.port) + TWO + ["--async", "--bdat", "--dsn-notify", "SUCCESS,FAILURE", "--dsn-ret", "FULL"])
    assert p.returncode == 0, p.stdout + p.stderr
    assert lines(p, "callback")[0].startswith("callback rc=SMTPC_OK calls=1")
    srv.wait()
    assert srv.errors == [] and len(srv.messages) == 1
    mail, r1, r2 = [l.decode() for l in srv.lines[1:4]]
    assert mail.endswith(" RET=FULL")
    assert r1.endswith(" NOTIFY=SUCCESS,FAILURE") and r2.endswith(" NOTIFY=SUCCESS,FAILURE")


def test_no_dsn_server_ignore_policy_sends_without_parameters(aiosmtpd):
    srv = aiosmtpd()  # aiosmtpd does not offer DSN
    p = run(base(srv.port) + TWO + ["--dsn-ret", "FULL", "--dsn-notify", "SUCCESS"])
    assert p.returncode == 0, p.stdout + p.stderr
    [env] = srv.envelopes
    assert env.rcpt_tos == ["b@example.org", "c@example.org"]
    assert not any("RET" in o for o in env.mail_options)
    assert env.rcpt_options == [[], []]


def test_no_dsn_server_require_policy_fails_before_mail(aiosmtpd):
    srv = aiosmtpd()
    p = run(base(srv.port) + TWO + ["--dsn-notify", "NEVER", "--dsn-require"])
    s = kv(lines(p, "send")[0])
    assert s["rc"] == "SMTPC_EUNSUPPORTED", p.stdout
    err = lines(p, "err")[0]
    assert "DSN" in err and "nothing was sent" in err
    assert srv.envelopes == [] and srv.rcpt_attempts == []


def test_malformed_notify_refused_before_anything(aiosmtpd):
    srv = aiosmtpd()
    p = run(base(srv.port) + ["--dsn-notify", "SOMETIMES"])
    assert kv(lines(p, "send")[0])["rc"] == "SMTPC_EINVAL", p.stdout
    assert srv.envelopes == [] and srv.ehlo_names == []  # not even connected


def test_bdat_when_offered_and_asked(scripted):
    srv = scripted(one_by_one([b"CHUNKING"], [("expect_bdat", b"250 2.0.0 Ok: queued as BDAT1\r\n")]))
    p = run(base(srv.port) + TWO + ["--bdat", "--body-bytes", "3000"])
    assert p.returncode == 0, p.stdout + p.stderr
    assert kv(lines(p, "send")[0])["queue"] == "BDAT1"
    srv.wait()
    assert srv.errors == []
    [msg] = srv.messages
    assert b"Message-ID: <m-0-0@drv.example>" in msg and msg.endswith(b"\r\n")
    assert sum(srv.bdat_sizes) == len(msg)
    assert any(re.match(rb"^BDAT \d+ LAST$", l) for l in srv.lines)
    assert b"DATA\r\n" not in srv.received


def test_bdat_not_used_by_default(scripted):
    # The client keeps the session's default: DATA even when CHUNKING is offered.
    srv = scripted(one_by_one([b"CHUNKING"], DATA_STEPS))
    p = run(base(srv.port) + TWO)
    assert p.returncode == 0, p.stdout + p.stderr
    srv.wait()
    assert srv.errors == [] and len(srv.messages) == 1
    assert b"BDAT" not in srv.received


def test_bdat_asked_without_chunking_falls_back_to_data(scripted):
    srv = scripted(one_by_one([], DATA_STEPS))
    p = run(base(srv.port) + TWO + ["--bdat"])
    assert p.returncode == 0, p.stdout + p.stderr
    srv.wait()
    assert srv.errors == [] and len(srv.messages) == 1


def _dsn_reports(msgs):
    out = []
    for m in msgs:
        em = email.message_from_bytes(m.raw, policy=email.policy.compat32)
        if em.get_content_type() == "multipart/report":
            out.append(em)
    return out


def test_postfix_success_dsn_carries_envid_and_orcpt(postfix):
    # b: NOTIFY=SUCCESS with ORCPT -> Postfix sends a success DSN to the
    # sender (a@example.org, delivered into the same catch-all Maildir);
    # c: NOTIFY=NEVER -> no notification.
    p = run(["--host", "127.0.0.1", "--port", str(postfix.port)] + TWO +
            ["--dsn-ret", "HDRS", "--dsn-envid", "ENV-42", "--rcpt-notify", "0=SUCCESS",
             "--rcpt-orcpt", "0=first@example.org", "--rcpt-notify", "1=NEVER", "--dsn-require"])
    assert p.returncode == 0, p.stdout + p.stderr
    msgs = postfix.wait_for(3)  # two deliveries and one DSN
    time.sleep(1.0)
    msgs = postfix.settle()
    reports = _dsn_reports(msgs)
    assert len(reports) == 1, [m.raw[:300] for m in msgs]
    assert len(msgs) == 3
    rep = reports[0]
    status = [part for part in rep.walk() if part.get_content_type() == "message/delivery-status"][0]
    text = status.as_string()
    assert "Original-Envelope-Id: ENV-42" in text
    assert re.search(r"Original-Recipient: rfc822; ?first@example.org", text)
    assert re.search(r"Final-Recipient: rfc822; ?b@example.org", text)
    assert "c@example.org" not in text
    # RET=HDRS: the headers come back, not the body.
    assert any(part.get_content_type() == "text/rfc822-headers" for part in rep.walk())
    # Both copies of the message itself arrived.
    plain = [m for m in msgs if b"Message-ID: <m-0-0@drv.example>" in m.raw
             and b"multipart/report" not in m.raw[:2000]]
    assert sorted(m.rcpt_to for m in plain) == ["b@example.org", "c@example.org"]


def _bdat_sessions(pf):
    return len(re.findall(r"disconnect from \S+ .*bdat=\d+", pf.log()))


def test_postfix_accepts_bdat_message_intact(postfix):
    before = _bdat_sessions(postfix)
    p = run(["--host", "127.0.0.1", "--port", str(postfix.port), "--bdat", "--body-bytes", "200000"])
    assert p.returncode == 0, p.stdout + p.stderr
    [m] = postfix.wait_for(1)
    body = m.parsed().get_content()
    want = "".join("\n" if k % 78 == 77 else "x" for k in range(200000))
    assert body.rstrip("\n") == want.rstrip("\n")
    # Postfix counts the commands of each session on disconnect: "bdat=N".
    deadline = time.monotonic() + 10
    while _bdat_sessions(postfix) == before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _bdat_sessions(postfix) == before + 1, postfix.log()[-2000:]
