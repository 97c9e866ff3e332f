"""The blocking session against a real Postfix: PIPELINING and real
CHUNKING (BDAT), which aiosmtpd does not have."""
from servers.certs import certs  # noqa: F401 (needed by postfix_server)
from servers.postfix import postfix, postfix_server  # noqa: F401
from test_session import run

BODY = (b"From: a@example.org\r\nTo: b@example.net\r\nSubject: session test\r\n\r\n"
        b"first\r\n.dot line\r\n..two\r\nbare LF\nlast")
ORIGINAL = (b"From: a@example.org\nTo: b@example.net\nSubject: session test\n\n"
            b"first\n.dot line\n..two\nbare LF\nlast\n")


def _deliveries(postfix, n):
    msgs = postfix.wait_for(n)
    return sorted((m.rcpt_to, m.mail_from, m.original) for m in msgs)


def test_pipelined_send(postfix, tmp_path):
    r = run(postfix.port, "--from", "a@example.org", "--to", "b@example.net", "--to", "c@example.net",
            "--do", "connect,ehlo,send,quit", body=BODY, tmp_path=tmp_path)
    assert r.rc == 0, r.out
    assert "PIPELINING" in r.replies["ehlo"][2] and "CHUNKING" in r.replies["ehlo"][2]
    assert r.rcpts == [("SMTPC_OK", 250), ("SMTPC_OK", 250)]
    assert r.replies["send"][0] == 250 and r.replies["send"][1] == "2.0.0"
    assert _deliveries(postfix, 2) == [("b@example.net", "a@example.org", ORIGINAL),
                                       ("c@example.net", "a@example.org", ORIGINAL)]


def test_bdat_step_by_step_and_in_a_transaction(postfix, tmp_path):
    # 200 KB: several 64 KiB chunks. BDAT is not dot-stuffed: the dots must
    # arrive as they are.
    big = BODY + b"\r\n" + b"".join(b".line %05d\r\n" % i for i in range(16000))
    r = run(postfix.port, "--from", "a@example.org", "--to", "b@example.net",
            "--do", "connect,ehlo,mail,rcpt,bdat,quit", body=big, tmp_path=tmp_path)
    assert r.rc == 0, r.out
    assert r.replies["bdat"][0] == 250
    r = run(postfix.port, "--from", "a@example.org", "--to", "c@example.net", "--bdat",
            "--do", "connect,ehlo,send,quit", body=big, tmp_path=tmp_path)
    assert r.rc == 0, r.out
    want = big.replace(b"\r\n", b"\n")  # Postfix stores LF; big ends with a CRLF
    assert _deliveries(postfix, 2) == [("b@example.net", "a@example.org", want),
                                       ("c@example.net", "a@example.org", want)]


def test_message_over_size_limit_is_refused(postfix, tmp_path):
    big = b"Subject: big\r\n\r\n" + b"x" * 70 + b"\r\n"
    big = big * (postfix.size_limit // len(big) + 10)
    r = run(postfix.port, "--to", "b@example.net", "--do", "connect,ehlo,mail,rcpt,data",
            body=big, tmp_path=tmp_path)
    assert r.rc_of("data") == "SMTPC_EPERMFAIL", r.out
    assert r.replies["data"][0] == 552
