"""The blocking session against a real server (aiosmtpd) and, for what
aiosmtpd lacks (CHUNKING, packet grouping), the scripted server."""
import os
import re
import subprocess

import pytest

from conftest import driver
from servers.aiosmtpd_server import aiosmtpd  # noqa: F401
from servers.scripted import scripted  # noqa: F401


def run(port, *args, host="127.0.0.1", timeout=60, body=None, tmp_path=None):
    cmd = [driver("session"), host, str(port)]
    if body is not None:
        f = tmp_path / "msg.eml"
        f.write_bytes(body)
        cmd += ["--file", str(f)]
    cmd += list(args)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert p.returncode in (0, 1), p.stderr
    return Result(p)


class Result:
    def __init__(self, p):
        self.rc = p.returncode
        self.out = p.stdout
        self.steps = {}
        self.replies = {}
        self.errs = {}
        self.rcpts = []
        self.connected = None
        self.canceled_after_us = None
        self.peak_rss_kb = None
        for line in p.stdout.splitlines():
            m = re.match(r"^step (\S+) rc=(\S+) ms=(\d+)$", line)
            if m:
                self.steps[m.group(1)] = (m.group(2), int(m.group(3)))
            m = re.match(r"^reply (\S+) (\d+) ([^|]*)\|(.*)$", line)
            if m:
                self.replies[m.group(1)] = (int(m.group(2)), m.group(3), m.group(4))
            m = re.match(r"^err (\S+) (.*)$", line)
            if m:
                self.errs[m.group(1)] = m.group(2)
            m = re.match(r"^rcpt (\d+) (\S+) (\d+)$", line)
            if m:
                self.rcpts.append((m.group(2), int(m.group(3))))
            m = re.match(r"^connected (\d)$", line)
            if m:
                self.connected = m.group(1) == "1"
            m = re.match(r"^peak_rss_kb (-?\d+)$", line)
            if m:
                self.peak_rss_kb = int(m.group(1))
            m = re.match(r"^canceled_after_us (\d+)$", line)
            if m:
                self.canceled_after_us = int(m.group(1))

    def rc_of(self, step):
        return self.steps[step][0]


MSG = (b"From: a@example.org\r\nTo: b@example.org\r\nSubject: test\r\n\r\n"
       b"Hello\r\n.leading dot\r\n..two dots\r\n.\r\nbare LF\nbare CR\rend")
# What the server must store: CRLF everywhere, dots un-stuffed by the server,
# a final CRLF added.
MSG_STORED = (b"From: a@example.org\r\nTo: b@example.org\r\nSubject: test\r\n\r\n"
              b"Hello\r\n.leading dot\r\n..two dots\r\n.\r\nbare LF\r\nbare CR\r\nend\r\n")


@pytest.mark.parametrize("step", ["data", "datacb"])
def test_step_by_step_delivery(aiosmtpd, tmp_path, step):
    srv = aiosmtpd()
    r = run(srv.port, "--to", "b@example.org", "--to", "c@example.org",
            "--do", "connect,ehlo,mail,rcpt,%s,quit" % step, body=MSG, tmp_path=tmp_path)
    assert r.rc == 0, r.out
    assert r.replies["connect"][0] == 220
    assert r.replies[step][0] == 250
    assert r.replies["quit"][0] == 221
    assert r.connected is False
    assert len(srv.envelopes) == 1
    env = srv.envelopes[0]
    assert env.mail_from == "sender@example.org"
    assert env.rcpt_tos == ["b@example.org", "c@example.org"]
    assert env.data == MSG_STORED


def test_default_ehlo_name_is_fqdn_or_address_literal(aiosmtpd, tmp_path):
    srv = aiosmtpd()
    r = run(srv.port, "--do", "connect,ehlo,quit")
    assert r.rc == 0, r.out
    name = srv.ehlo_names[0]
    # No FQDN on a test box usually: then the literal of our end of the connection.
    assert name == "[127.0.0.1]" or ("." in name and " " not in name), name


def test_explicit_ehlo_name_and_extensions(aiosmtpd):
    srv = aiosmtpd(pipelining=True)
    r = run(srv.port, "--ehlo", "client.example.org", "--do", "connect,ehlo,noop,rset,quit")
    assert r.rc == 0, r.out
    assert srv.ehlo_names == ["client.example.org"]
    assert "PIPELINING" in r.replies["ehlo"][2]
    assert r.replies["noop"][0] == 250 and r.replies["rset"][0] == 250


@pytest.mark.parametrize("pipelining", [False, True])
def test_send_transaction_per_recipient_results(aiosmtpd, tmp_path, pipelining):
    srv = aiosmtpd(pipelining=pipelining, refuse={"bad@example.org"}, tempfail={"later@example.org"})
    r = run(srv.port, "--to", "ok1@example.org", "--to", "bad@example.org",
            "--to", "later@example.org", "--to", "ok2@example.org",
            "--do", "connect,ehlo,send,quit", body=MSG, tmp_path=tmp_path)
    assert r.rc == 0, r.out
    assert r.rcpts == [("SMTPC_OK", 250), ("SMTPC_EPERMFAIL", 550), ("SMTPC_ETEMPFAIL", 450),
                       ("SMTPC_OK", 250)]
    assert r.replies["send"][0] == 250
    assert [e.rcpt_tos for e in srv.envelopes] == [["ok1@example.org", "ok2@example.org"]]
    assert srv.envelopes[0].data == MSG_STORED


def test_send_all_recipients_refused_then_next_transaction_works(aiosmtpd, tmp_path):
    srv = aiosmtpd(pipelining=True, refuse={"bad@example.org"})
    r = run(srv.port, "--to", "bad@example.org", "--do", "connect,ehlo,send,noop,send,quit",
            "--keep-going", body=MSG, tmp_path=tmp_path)
    assert r.rc_of("send") == "SMTPC_EPERMFAIL"
    assert "server replied 550" in r.errs["send"]
    assert r.rcpts == [("SMTPC_EPERMFAIL", 550)] * 2  # both sends
    assert srv.envelopes == []
    # The session stayed in step (its RSET was answered) and kept the connection.
    assert r.rc_of("noop") == "SMTPC_OK" and r.replies["noop"][0] == 250
    assert srv.rcpt_attempts == ["bad@example.org", "bad@example.org"]
    assert r.replies["quit"][0] == 221


@pytest.mark.parametrize("pipelining", [False, True])
def test_send_all_or_nothing_delivers_nothing(aiosmtpd, tmp_path, pipelining):
    srv = aiosmtpd(pipelining=pipelining, refuse={"bad@example.org"})
    r = run(srv.port, "--to", "good@example.org", "--to", "bad@example.org", "--strict",
            "--do", "connect,ehlo,send", body=MSG, tmp_path=tmp_path)
    assert r.rc_of("send") == "SMTPC_EPERMFAIL"
    assert r.rcpts == [("SMTPC_OK", 250), ("SMTPC_EPERMFAIL", 550)]
    assert srv.envelopes == []
    assert r.connected is True  # refused politely (RSET), the connection is kept


PIPE_EHLO = b"250-test.example\r\n250-PIPELINING\r\n250 8BITMIME\r\n"


def test_pipelined_group_is_one_write(scripted, tmp_path):
    srv = scripted([
        ("send", b"220 scripted ESMTP\r\n"),
        ("expect", rb"^EHLO "),
        ("send", PIPE_EHLO),
        ("expect", rb"^MAIL FROM:<sender@example.org>$"),
        ("expect", rb"^RCPT TO:<a@example.org>$"),
        ("expect", rb"^RCPT TO:<b@example.org>$"),
        ("expect", rb"^DATA$"),
        ("send", b"250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n"),
        ("expect_data",),
        ("send", b"250 queued\r\n"),
        ("expect", rb"^QUIT$"),
        ("send", b"221 bye\r\n"),
    ])
    r = run(srv.port, "--to", "a@example.org", "--to", "b@example.org",
            "--do", "connect,ehlo,send,quit", body=MSG, tmp_path=tmp_path)
    assert r.rc == 0, r.out
    assert srv.wait(10)
    assert srv.errors == []
    assert srv.messages == [MSG_STORED]
    group = b"MAIL FROM:<sender@example.org>\r\nRCPT TO:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n"
    # One write: on loopback the group arrives in a single recv().
    assert group in srv.chunks, srv.chunks


def test_body_and_final_dot_are_one_write(scripted, tmp_path):
    # The body and the end-of-data marker go out together (one write, so one
    # recv() on loopback): a separate 3-byte ".\r\n" write costs a segment
    # per message and, without TCP_NODELAY, a delayed-ACK stall.
    srv = scripted([
        ("send", b"220 scripted ESMTP\r\n"),
        ("expect", rb"^EHLO "),
        ("send", PIPE_EHLO),
        ("expect", rb"^MAIL FROM:<sender@example.org>$"),
        ("expect", rb"^RCPT TO:<a@example.org>$"),
        ("expect", rb"^DATA$"),
        ("send", b"250 ok\r\n250 ok\r\n354 go\r\n"),
        ("expect_data",),
        ("send", b"250 queued\r\n"),
        ("expect", rb"^QUIT$"),
        ("send", b"221 bye\r\n"),
    ])
    r = run(srv.port, "--to", "a@example.org", "--do", "connect,ehlo,send,quit", body=MSG,
            tmp_path=tmp_path)
    assert r.rc == 0, r.out
    assert srv.wait(10)
    assert srv.errors == []
    assert srv.messages == [MSG_STORED]
    ends = [c for c in srv.chunks if c.endswith(b"\r\n.\r\n")]
    assert ends and len(ends[0]) > len(b"\r\n.\r\n") and MSG_STORED[-20:] in ends[0], srv.chunks


def test_without_pipelining_commands_go_one_by_one(scripted, tmp_path):
    srv = scripted([
        ("send", b"220 scripted ESMTP\r\n"),
        ("expect", rb"^EHLO "),
        ("send", b"250 test.example\r\n"),
        ("expect", rb"^MAIL FROM:<sender@example.org>$"),
        ("sleep", 0.2),  # a pipelining client would have sent RCPT by now
        ("send", b"250 ok\r\n"),
        ("expect", rb"^RCPT TO:<a@example.org>$"),
        ("send", b"250 ok\r\n"),
        ("expect", rb"^DATA$"),
        ("send", b"354 go\r\n"),
        ("expect_data",),
        ("send", b"250 queued\r\n"),
    ])
    r = run(srv.port, "--to", "a@example.org", "--do", "connect,ehlo,send", body=MSG, tmp_path=tmp_path)
    assert r.rc == 0, r.out
    srv.stop()
    assert srv.errors == []
    assert srv.chunks[1] == b"MAIL FROM:<sender@example.org>\r\n"
    assert srv.messages == [MSG_STORED]


CHUNKING_EHLO = b"250-test.example\r\n250-PIPELINING\r\n250 CHUNKING\r\n"


@pytest.mark.parametrize("mode", ["bdat", "send"])
def test_bdat(scripted, tmp_path, mode):
    # 150 000 bytes: more than two 64 KiB chunks, plus the LAST one.
    body = b"".join(b"line %06d .x\r\n" % i for i in range(10000))
    steps = [("send", b"220 scripted ESMTP\r\n"), ("expect", rb"^EHLO "), ("send", CHUNKING_EHLO)]
    if mode == "bdat":
        steps += [("expect", rb"^MAIL FROM:"), ("send", b"250 ok\r\n"),
                  ("expect", rb"^RCPT TO:<a@example.org>$"), ("send", b"250 ok\r\n")]
    else:
        steps += [("expect", rb"^MAIL FROM:"), ("expect", rb"^RCPT TO:<a@example.org>$"),
                  ("send", b"250 ok\r\n250 ok\r\n")]
    steps += [("expect_bdat", b"250 chunk ok\r\n"), ("expect", rb"^QUIT$"), ("send", b"221 bye\r\n")]
    srv = scripted(steps)
    args = ["--to", "a@example.org"]
    if mode == "bdat":
        args += ["--do", "connect,ehlo,mail,rcpt,bdat,quit"]
    else:
        args += ["--bdat", "--do", "connect,ehlo,send,quit"]
    r = run(srv.port, *args, body=body, tmp_path=tmp_path)
    assert r.rc == 0, r.out
    assert srv.wait(10)
    assert srv.errors == []
    assert srv.messages == [body]  # no dot-stuffing with BDAT
    assert len(srv.bdat_sizes) >= 3 and sum(srv.bdat_sizes) == len(body)
    assert all(n <= 65536 for n in srv.bdat_sizes)


def test_bdat_unsupported_sends_nothing(aiosmtpd, tmp_path):
    srv = aiosmtpd()
    r = run(srv.port, "--to", "a@example.org", "--do", "connect,ehlo,bdat", body=MSG, tmp_path=tmp_path)
    assert r.rc_of("bdat") == "SMTPC_EUNSUPPORTED"
    assert r.connected is True
    r = run(srv.port, "--to", "a@example.org", "--bdat", "--do", "connect,ehlo,send", body=MSG,
            tmp_path=tmp_path)
    assert r.rc_of("send") == "SMTPC_EUNSUPPORTED"
    assert srv.rcpt_attempts == []


def test_large_message_streams(aiosmtpd, tmp_path):
    # 3 MB through the 7-byte-piece callback and the memory path.
    body = b"".join(b"%07d ..........................................................\r\n" % i
                    for i in range(45000))
    srv = aiosmtpd()
    r = run(srv.port, "--to", "a@example.org", "--piece", "65536",
            "--do", "connect,ehlo,mail,rcpt,datacb,quit", body=body, tmp_path=tmp_path)
    assert r.rc == 0, r.out
    assert srv.envelopes[0].data == body


def test_ipv6_loopback(aiosmtpd):
    try:
        srv = aiosmtpd(host="::1")
    except Exception as e:  # no IPv6 on this box
        pytest.skip("no IPv6 loopback: %s" % e)
    r = run(srv.port, "--do", "connect,ehlo,quit", host="::1")
    assert r.rc == 0, r.out
    assert srv.ehlo_names[0] in ("[IPv6:::1]",) or "." in srv.ehlo_names[0]


@pytest.mark.parametrize("step", ["datagen", "bdatgen"])
def test_body_memory_is_bounded(scripted, step):
    # 49 MB streamed from a generating callback: the session must never hold
    # the message (RSS stays a small fraction of it).
    size = 70 * 700000  # whole 70-byte lines from the generator, 49 MB
    ehlo = CHUNKING_EHLO if step == "bdatgen" else PIPE_EHLO
    steps = [("send", b"220 scripted ESMTP\r\n"), ("expect", rb"^EHLO "), ("send", ehlo),
             ("expect", rb"^MAIL"), ("send", b"250 ok\r\n"), ("expect", rb"^RCPT"), ("send", b"250 ok\r\n")]
    if step == "datagen":
        steps += [("expect", rb"^DATA$"), ("send", b"354 go\r\n"), ("count_data",), ("send", b"250 ok\r\n")]
    else:
        steps += [("expect_bdat", b"250 ok\r\n")]
    steps += [("expect", rb"^QUIT$"), ("send", b"221 bye\r\n")]
    srv = scripted(steps)
    r = run(srv.port, "--to", "a@example.org", "--gen-bytes", str(size),
            "--do", "connect,ehlo,mail,rcpt,%s,quit" % step)
    assert r.rc == 0, r.out
    assert srv.wait(30) and srv.errors == []
    if step == "datagen":
        assert srv.data_sizes == [size + 3]  # no dot-stuffing needed; ".\r\n" added
    else:
        assert sum(srv.bdat_sizes) == size
    if r.peak_rss_kb is None or r.peak_rss_kb < 0:
        pytest.skip("no VmHWM on this system")
    # A few chunks in flight, not the message (ASan adds ~10 MB of its own).
    assert r.peak_rss_kb < 16 * 1024, r.peak_rss_kb


@pytest.mark.parametrize("step", ["data", "datacb"])
def test_empty_body(aiosmtpd, tmp_path, step):
    srv = aiosmtpd()
    r = run(srv.port, "--to", "a@example.org", "--file", "", "--do", "connect,ehlo,mail,rcpt,%s,quit" % step)
    assert r.rc == 0, r.out
    assert srv.envelopes[0].data == b""
