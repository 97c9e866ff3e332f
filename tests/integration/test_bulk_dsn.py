"""DSN (RFC 3461) through smtpc_bulk: smtpc_bulk_msg.params (the client's
smtpc_send_params) on MAIL and RCPT over several connections, read back from
the notifications Postfix sends; smtpc_bulk_set_dsn_policy on a server without
DSN (aiosmtpd); the CLI's --dsn-notify/--dsn-ret/--envid with --connections
and with smtpc bulk --dir (on the wire of a scripted server)."""
import email
import email.policy
import re
import subprocess
import time

from conftest import driver
from servers.aiosmtpd_server import aiosmtpd  # noqa: F401
from servers.postfix import postfix, postfix_server  # noqa: F401
from servers.scripted import scripted  # noqa: F401

# R IDX STATUS CODE ATTEMPTS ERRNAME ERRMSG
RESULT = re.compile(r"^R (\d+) (\S+) \S+ \S+ (\S+) ?(.*)$", re.M)


def bulk(port, count, conns, *opts):
    p = subprocess.run([driver("bulk"), "127.0.0.1", str(port), str(count), str(conns), *opts],
                       capture_output=True, timeout=120)
    out = p.stdout.decode()
    assert p.returncode == 0, p.stderr.decode() + out[-2000:]
    assert "DUPLICATE" not in out, out
    return {int(m[1]): (m[2], m[3], m[4]) for m in RESULT.finditer(out)}, out


def reports(msgs):
    """The delivery-status parts of the notifications among msgs."""
    out = []
    for m in msgs:
        em = email.message_from_bytes(m.raw, policy=email.policy.compat32)
        if em.get_content_type() == "multipart/report":
            out.append([p for p in em.walk() if p.get_content_type() == "message/delivery-status"][0]
                       .as_string())
    return out


def test_bulk_params_reach_postfix_over_two_connections(postfix):
    # 4 messages to b and c over 2 connections; b: its own NOTIFY=SUCCESS and
    # ORCPT, c: the message-wide NOTIFY=NEVER; ENVID differs per message
    res, out = bulk(postfix.port, 4, 2, "--rcpt", "b@example.org", "--rcpt", "c@example.org",
                    "--dsn-notify", "NEVER", "--orcpt", "first@example.org", "--envid", "BULK",
                    "--dsn-ret", "HDRS", "--dsn-require")
    assert len(res) == 4 and all(r[0] == "SENT" for r in res.values()), out
    postfix.wait_for(12)  # 8 deliveries and 4 success notifications
    time.sleep(1.0)
    msgs = postfix.settle()
    reps = reports(msgs)
    assert len(msgs) == 12 and len(reps) == 4, [m.raw[:300] for m in msgs]
    envids = sorted(re.search(r"Original-Envelope-Id: (\S+)", r)[1] for r in reps)
    assert envids == ["BULK-0", "BULK-1", "BULK-2", "BULK-3"]
    for r in reps:
        assert re.search(r"Original-Recipient: rfc822; ?first@example.org", r), r
        assert re.search(r"Final-Recipient: rfc822; ?b@example.org", r), r
        assert "c@example.org" not in r


def test_bulk_without_params_asks_for_nothing(postfix):
    # the same run without params: no notification at all
    res, out = bulk(postfix.port, 2, 2, "--rcpt", "b@example.org")
    assert len(res) == 2 and all(r[0] == "SENT" for r in res.values()), out
    postfix.wait_for(2)
    time.sleep(1.0)
    msgs = postfix.settle()
    assert len(msgs) == 2 and reports(msgs) == []


def test_no_dsn_server_ignore_policy_sends_without_parameters(aiosmtpd):
    srv = aiosmtpd(pipelining=True)  # aiosmtpd does not offer DSN
    res, out = bulk(srv.port, 3, 2, "--dsn-notify", "SUCCESS", "--envid", "X", "--dsn-ret", "FULL")
    assert len(res) == 3 and all(r[0] == "SENT" for r in res.values()), out
    assert len(srv.envelopes) == 3
    for env in srv.envelopes:
        assert not any("RET" in o or "ENVID" in o for o in env.mail_options), env.mail_options
        assert env.rcpt_options == [[]]


def test_no_dsn_server_require_policy_fails_each_message_unsent(aiosmtpd):
    srv = aiosmtpd(pipelining=True)
    res, out = bulk(srv.port, 3, 2, "--dsn-notify", "SUCCESS", "--dsn-require")
    assert len(res) == 3, out
    for status, err, msg in res.values():
        assert (status, err) == ("FAILED", "SMTPC_EUNSUPPORTED"), out
        assert "DSN" in msg
    assert srv.envelopes == [] and srv.rcpt_attempts == []
    assert "DONE 0 3 0 3 0 0" in out


def test_require_without_params_sends(aiosmtpd):
    # the policy alone asks for nothing
    srv = aiosmtpd(pipelining=True)
    res, out = bulk(srv.port, 2, 2, "--dsn-require")
    assert len(res) == 2 and all(r[0] == "SENT" for r in res.values()), out


def cli_send(smtpc_bin, port, *more):
    return subprocess.run([smtpc_bin, "send", "--server", f"127.0.0.1:{port}", "--tls", "none",
                           "--from", "a@example.org", "--to", "b@example.org", "--subject", "dsn",
                           "--text", "hello", "--count", "3", "--connections", "2", *more],
                          capture_output=True, timeout=120)


def test_cli_connections_dsn_to_postfix(postfix, smtpc_bin):
    p = cli_send(smtpc_bin, postfix.port, "--dsn-notify", "success", "--dsn-ret", "hdrs", "--envid", "CLI-7")
    assert p.returncode == 0, p.stderr.decode()
    assert b"3 sent, 0 not sent" in p.stderr
    postfix.wait_for(6)
    time.sleep(1.0)
    msgs = postfix.settle()
    reps = reports(msgs)
    assert len(msgs) == 6 and len(reps) == 3, [m.raw[:300] for m in msgs]
    assert all("Original-Envelope-Id: CLI-7" in r for r in reps)
    assert all(re.search(r"Final-Recipient: rfc822; ?b@example.org", r) for r in reps)


def test_cli_connections_dsn_required_by_send(aiosmtpd, smtpc_bin):
    srv = aiosmtpd(pipelining=True)
    p = cli_send(smtpc_bin, srv.port, "--dsn-notify", "success")
    assert p.returncode == 69, p.stderr.decode()  # as a single send: EX_UNAVAILABLE
    assert b"DSN" in p.stderr and b"0 sent, 3 not sent" in p.stderr
    assert srv.envelopes == [] and srv.rcpt_attempts == []


# ---- smtpc bulk --dir: the same DSN options as send -----------------------------------

def bulk_dir(smtpc_bin, port, d, *more):
    return subprocess.run([smtpc_bin, "bulk", "--server", f"127.0.0.1:{port}", "--tls", "none",
                           "--dir", str(d), *more], capture_output=True, timeout=120)


def test_cli_bulk_dir_dsn_on_the_wire(scripted, smtpc_bin, tmp_path):
    # each file's MAIL carries RET and ENVID, each RCPT the NOTIFY (spelled as
    # RFC 3461 does, whatever case was typed)
    (tmp_path / "1.eml").write_bytes(b"From: a@example.org\r\nTo: b@example.org, c@example.org\r\n"
                                     b"Subject: one\r\n\r\nbody1\r\n")
    (tmp_path / "2.eml").write_bytes(b"X-Sender: s@example.org\r\nX-Receiver: d@example.org\r\n"
                                     b"Subject: two\r\n\r\nbody2\r\n")
    one = [("expect", rb"^MAIL FROM:<a@example\.org> .*RET=HDRS"),
           ("expect", rb"^RCPT TO:<b@example\.org> NOTIFY=SUCCESS,FAILURE$"),
           ("expect", rb"^RCPT TO:<c@example\.org> NOTIFY=SUCCESS,FAILURE$"),
           ("expect", rb"^DATA$"), ("send", b"250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n"),
           ("expect_data",), ("send", b"250 queued as A1\r\n")]
    two = [("expect", rb"^MAIL FROM:<s@example\.org> .*RET=HDRS"),
           ("expect", rb"^RCPT TO:<d@example\.org> NOTIFY=SUCCESS,FAILURE$"),
           ("expect", rb"^DATA$"), ("send", b"250 ok\r\n250 ok\r\n354 go\r\n"),
           ("expect_data",), ("send", b"250 queued as A2\r\n")]
    srv = scripted([("send", b"220 hi\r\n"), ("expect", rb"^EHLO "),
                    ("send", b"250-hi\r\n250-DSN\r\n250 PIPELINING\r\n"), *one, *two,
                    ("expect", rb"^QUIT$"), ("send", b"221 bye\r\n"), ("close",)])
    p = bulk_dir(smtpc_bin, srv.port, tmp_path, "--dsn-notify", "success,failure", "--dsn-ret", "hdrs",
                 "--envid", "RUN-9")
    srv.wait()
    assert srv.errors == [], (srv.errors, p.stderr)
    assert p.returncode == 0, p.stderr.decode()
    mails = [ln for ln in srv.lines if ln.startswith(b"MAIL FROM:")]
    assert len(mails) == 2 and all(b" ENVID=RUN-9" in m for m in mails), mails
    assert len(srv.messages) == 2


def test_cli_bulk_dir_dsn_needs_a_dsn_server(aiosmtpd, smtpc_bin, tmp_path):
    # as send: a server without DSN fails every message before it is sent
    srv = aiosmtpd(pipelining=True)
    (tmp_path / "1.eml").write_bytes(b"From: a@example.org\r\nTo: b@example.org\r\n\r\nx\r\n")
    p = bulk_dir(smtpc_bin, srv.port, tmp_path, "--dsn-notify", "never")
    assert p.returncode == 75, p.stderr.decode()
    assert b"DSN" in p.stderr and srv.envelopes == [] and srv.rcpt_attempts == []
    # without the options the same run sends
    assert bulk_dir(smtpc_bin, srv.port, tmp_path).returncode == 0 and len(srv.envelopes) == 1


def test_cli_bulk_dir_dsn_values_checked(smtpc_bin, tmp_path):
    (tmp_path / "1.eml").write_bytes(b"From: a@example.org\r\nTo: b@example.org\r\n\r\nx\r\n")
    for bad, what in ((["--dsn-notify", "sometimes"], b"--dsn-notify"), (["--dsn-ret", "all"], b"--dsn-ret"),
                      (["--envid", "a b"], b"--envid")):
        p = bulk_dir(smtpc_bin, 1, tmp_path, *bad)
        assert p.returncode == 64 and what in p.stderr, (bad, p.stderr)
