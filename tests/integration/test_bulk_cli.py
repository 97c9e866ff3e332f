"""The CLI over smtpc_bulk: smtpc send --count/--connections, smtpc bulk --dir."""
import subprocess

from servers.aiosmtpd_server import aiosmtpd  # noqa: F401


def test_send_count_connections(aiosmtpd, smtpc_bin, tmp_path):
    srv = aiosmtpd(pipelining=True)
    msg = tmp_path / "m.eml"
    msg.write_bytes(b"From: a@example.org\r\nTo: b@example.org\r\nSubject: many\r\n\r\nhello\r\n.dot line\r\n")
    p = subprocess.run([smtpc_bin, "send", "--server", f"127.0.0.1:{srv.port}", "--tls", "none", "--from", "a@example.org",
                        "--to", "b@example.org", "--message", str(msg), "--count", "50",
                        "--connections", "4"], capture_output=True, timeout=120)
    assert p.returncode == 0, p.stderr.decode()
    assert b"50 sent, 0 not sent" in p.stderr
    assert len(srv.envelopes) == 50
    assert all(e.data.endswith(b"hello\r\n.dot line\r\n") for e in srv.envelopes)


def test_bulk_dir_envelopes(aiosmtpd, smtpc_bin, tmp_path):
    srv = aiosmtpd(pipelining=True, refuse={"nobody@example.org"})
    (tmp_path / "1.eml").write_bytes(b"X-Sender: iis@example.org\r\nX-Receiver: r1@example.org\r\n"
                                     b"X-Receiver: r2@example.org\r\nSubject: one\r\n\r\nbody1\r\n")
    (tmp_path / "2.eml").write_bytes(b"From: Ann <ann@example.org>\r\nTo: x@example.org, Y <y@example.org>\r\n"
                                     b"Subject: two\r\n\r\nbody2\r\n")
    (tmp_path / "3.eml").write_bytes(b"From: z@example.org\r\nTo: nobody@example.org\r\n\r\nrefused\r\n")
    (tmp_path / "skip.txt").write_bytes(b"not a message")
    p = subprocess.run([smtpc_bin, "bulk", "--server", f"127.0.0.1:{srv.port}", "--tls", "none", "--dir", str(tmp_path),
                        "--connections", "2"], capture_output=True, timeout=120)
    assert p.returncode == 75, p.stderr.decode()  # one refused
    assert b"2 sent, 1 not sent" in p.stderr and b"3.eml: failed" in p.stderr
    by = {e.mail_from: e for e in srv.envelopes}
    assert by["iis@example.org"].rcpt_tos == ["r1@example.org", "r2@example.org"]
    assert by["iis@example.org"].data == b"Subject: one\r\n\r\nbody1\r\n"  # X- lines removed
    assert by["ann@example.org"].rcpt_tos == ["x@example.org", "y@example.org"]


def test_bulk_help_and_bad_numbers(smtpc_bin, tmp_path):
    p = subprocess.run([smtpc_bin, "bulk", "--help"], capture_output=True, timeout=30)
    assert p.returncode == 0 and b"--connections K" in p.stdout and b"--proxy URL" in p.stdout
    base = [smtpc_bin, "send", "--server", "127.0.0.1:1", "--from", "a@example.org", "--to", "b@example.org"]
    for extra, what in ((["--count", "3x", "--connections", "2"], b"--count"),
                        (["--count", "5", "--connections", "0"], b"--connections"),
                        (["--count", "5", "--connections", "100001"], b"--connections"),
                        (["--count", "5", "--connections", "2", "--rate", "-1"], b"--rate"),
                        (["--count", "5", "--connections", "2", "--max-per-connection", "x"],
                         b"--max-per-connection")):
        p = subprocess.run(base + extra, capture_output=True, timeout=30)
        assert p.returncode == 64, (extra, p.stderr)
        assert what in p.stderr, (extra, p.stderr)


def test_bulk_dir_envelope_from_folded_headers_and_bcc(aiosmtpd, smtpc_bin, tmp_path):
    # the envelope from the headers as sendmail -t reads them: folded fields,
    # quoted names with commas, Cc and Bcc, any number of recipients, no
    # duplicates; the Bcc field never leaves this machine
    srv = aiosmtpd(pipelining=True)
    many = ",\r\n ".join(f"r{i}@example.org" for i in range(100))
    (tmp_path / "1.eml").write_bytes(
        b"From: \"Doe, Ann\" <ann@example.org>\r\n"
        b"To: \"Smith, Bob\" <bob@example.org>,\r\n\tcarl@example.org,\r\n  Dee <dee@example.org>\r\n"
        b"Cc: BOB@example.org\r\nBcc: hidden@example.org,\r\n secret@example.org\r\n"
        b"Subject: folded\r\n\r\nbody\r\n")
    (tmp_path / "2.eml").write_bytes(b"From: z@example.org\r\nTo: " + many.encode() + b"\r\n\r\nmany\r\n")
    (tmp_path / "3.eml").write_bytes(b"X-Sender: <>\r\nX-Receiver: postmaster@example.org\r\n"
                                     b"Bcc: leak@example.org\r\nSubject: bounce\r\n\r\nDSN\r\n")
    p = subprocess.run([smtpc_bin, "bulk", "--server", f"127.0.0.1:{srv.port}", "--tls", "none", "--dir", str(tmp_path),
                        "--connections", "2"], capture_output=True, timeout=120)
    assert p.returncode == 0, p.stderr.decode()
    by = {e.mail_from: e for e in srv.envelopes}
    e = by["ann@example.org"]
    assert e.rcpt_tos == ["bob@example.org", "carl@example.org", "dee@example.org", "hidden@example.org",
                          "secret@example.org"]
    assert b"Bcc" not in e.data and b"hidden@" not in e.data and b"secret@" not in e.data
    assert e.data.startswith(b"From: \"Doe, Ann\" <ann@example.org>\r\nTo: ") and e.data.endswith(b"\r\n\r\nbody\r\n")
    assert by["z@example.org"].rcpt_tos == [f"r{i}@example.org" for i in range(100)]
    b = by["<>"]  # aiosmtpd records the null sender so
    assert b.rcpt_tos == ["postmaster@example.org"]  # X-Receiver: the envelope; Bcc dropped anyway
    assert b.data == b"Subject: bounce\r\n\r\nDSN\r\n"


def test_bulk_dir_local_refusal_is_reported_without_a_reply_code(aiosmtpd, smtpc_bin, tmp_path):
    srv = aiosmtpd(pipelining=True)
    (tmp_path / "1.eml").write_bytes(b"From: a@example.org\r\nTo: b@example.org\r\n\r\n" + b"x" * 1200 + b"\r\n")
    p = subprocess.run([smtpc_bin, "bulk", "--server", f"127.0.0.1:{srv.port}", "--tls", "none", "--dir", str(tmp_path)],
                       capture_output=True, timeout=120)
    assert p.returncode == 75 and srv.envelopes == []
    line = [l for l in p.stderr.decode().splitlines() if "1.eml" in l][0]
    assert line.endswith("failed: message body: a line is over 998 octets"), line


def test_bulk_declares_8bitmime_and_smtputf8(aiosmtpd, smtpc_bin, tmp_path):
    # RFC 6152: an 8-bit body goes with BODY=8BITMIME; RFC 6531: a non-ASCII
    # address with SMTPUTF8, and never to a server that does not offer it
    def run(srv):
        return subprocess.run([smtpc_bin, "bulk", "--server", f"127.0.0.1:{srv.port}", "--tls", "none", "--dir", str(tmp_path)],
                              capture_output=True, timeout=120)
    (tmp_path / "1.eml").write_bytes("From: a@example.org\r\nTo: b@example.org\r\nSubject: 8\r\n\r\ncaf\u00e9\r\n"
                                     .encode())
    (tmp_path / "2.eml").write_bytes("From: a@example.org\r\nTo: jos\u00e9@example.org\r\n\r\nx\r\n".encode())
    (tmp_path / "3.eml").write_bytes(b"From: seven@example.org\r\nTo: b@example.org\r\n\r\nascii\r\n")
    srv = aiosmtpd(pipelining=True, smtputf8=True)
    p = run(srv)
    assert p.returncode == 0, p.stderr.decode()
    by = {e.rcpt_tos[0] if e.mail_from == "a@example.org" else e.mail_from: e for e in srv.envelopes}
    assert "BODY=8BITMIME" in by["b@example.org"].mail_options and "SMTPUTF8" not in by["b@example.org"].mail_options
    assert "SMTPUTF8" in by["jos\u00e9@example.org"].mail_options
    assert [o for o in by["seven@example.org"].mail_options if not o.startswith("SIZE=")] == []
    srv2 = aiosmtpd(pipelining=True, smtputf8=False)
    p = run(srv2)
    assert p.returncode == 75
    assert b"2.eml: failed: the server does not offer SMTPUTF8" in p.stderr
    assert sorted(e.rcpt_tos[0] for e in srv2.envelopes) == ["b@example.org", "b@example.org"]


def test_bulk_dir_reads_only_what_a_pickup_writer_wrote(aiosmtpd, smtpc_bin, tmp_path):
    """bulk --dir reads pickup files with the library's reader and lister:
    a temporary or other dot-file is never taken (it may be half written),
    and X-Receiver lines that follow the message's own header fields are
    part of the message, never envelope (issue 14: envelope injection)."""
    srv = aiosmtpd(pipelining=True)
    (tmp_path / "1.eml").write_bytes(b"X-Sender: a@example.org\r\nX-Receiver: b@example.org\r\n"
                                     b"Subject: one\r\nX-Receiver: attacker@example.net\r\n\r\nbody\r\n")
    (tmp_path / ".tmp-half.eml").write_bytes(b"X-Sender: a@example.org\r\nX-Receiver: c@exam")
    (tmp_path / "2.eml").write_bytes(b"From: z@example.org\r\nTo: d@example.org\r\n"
                                     b"X-Receiver: attacker@example.net\r\n\r\nbody2\r\n")
    p = subprocess.run([smtpc_bin, "bulk", "--server", f"127.0.0.1:{srv.port}", "--tls", "none", "--dir",
                        str(tmp_path)], capture_output=True, timeout=120)
    assert p.returncode == 0, p.stderr.decode()
    assert sorted(e.rcpt_tos[0] for e in srv.envelopes) == ["b@example.org", "d@example.org"]
    assert all(len(e.rcpt_tos) == 1 for e in srv.envelopes)
