"""smtpc send --message FILE streams the file: peak resident memory stays
bounded whatever the message size, the server gets the exact bytes, and
SIZE= / BODY=8BITMIME are still worked out (from the file, in one chunked
pass). The peak is smtpc's own ru_maxrss (drv_rss), in KiB on Linux.

Before streaming, a 100 MiB message cost about 104 MiB here; streamed, about
4 MiB. Under ASan absolute figures mean little, so the test also compares a
big message with a tiny one: the difference must be far below the size."""
import hashlib
import os
import subprocess
import time

import pytest

from conftest import driver, sanitized
from servers.aiosmtpd_server import aiosmtpd  # noqa: F401
from servers.scripted import scripted  # noqa: F401

MIB = 1 << 20
BIG = 24 * MIB  # aiosmtpd holds the message (its limit is 32 MiB)


def clean_env(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMTPC_")}
    env["HOME"] = str(tmp_path)
    env["SMTPC_CONFIG"] = "/dev/null"
    return env


def run_rss(smtpc_bin, tmp_path, *args, stdin=subprocess.DEVNULL):
    """Runs smtpc under drv_rss; returns (exit status, stdout, stderr, peak RSS
    in KiB). (A child of pytest would carry pytest's own high-water mark.)"""
    rep = tmp_path / "rss.txt"
    r = subprocess.run([driver("rss"), str(rep), smtpc_bin, *args], cwd=tmp_path,
                       stdin=stdin, capture_output=True, timeout=300, env=clean_env(tmp_path))
    kib, status = (int(x) for x in rep.read_text().split())
    assert status == r.returncode, (status, r.returncode)
    return r.returncode, r.stdout, r.stderr, kib


def write_message(path, size, eight_bit_at_end):
    """A CRLF message of exactly size bytes, with dot-leading lines; a single
    8-bit byte, if any, in the last line (after many read chunks)."""
    head = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: big\r\n\r\n"
    line = b".dot-leading line " + b"x" * 58 + b"\r\n"
    tail = (b"end \xc3\xa9\r\n" if eight_bit_at_end else b"end e\r\n")
    body = size - len(head) - len(tail)
    n, rest = divmod(body, len(line))
    h = hashlib.sha256()
    with open(path, "wb") as f:
        f.write(head)
        h.update(head)
        block = line * 4096
        for _ in range(n // 4096):
            f.write(block)
            h.update(block)
        last = line * (n % 4096) + b"y" * rest  # the last line padded to the exact size
        f.write(last + tail)
        h.update(last + tail)
    assert os.path.getsize(path) == size
    return h.hexdigest()


def send(smtpc_bin, tmp_path, srv, msg):
    return run_rss(smtpc_bin, tmp_path, "send", "--server", f"127.0.0.1:{srv.port}", "--tls", "none",
                   "--from", "a@example.org", "--to", "b@example.org", "--message", str(msg))


@pytest.mark.parametrize("eight_bit", [True, False])
def test_big_message_file_streamed_to_server(smtpc_bin, tmp_path, aiosmtpd, eight_bit):
    srv = aiosmtpd()
    small = tmp_path / "small.eml"
    small.write_bytes(b"From: a@example.org\r\nSubject: small\r\n\r\nhi\r\n")
    rc, _, err, small_kib = send(smtpc_bin, tmp_path, srv, small)
    assert rc == 0, err

    big = tmp_path / "big.eml"
    digest = write_message(big, BIG, eight_bit)
    rc, out, err, big_kib = send(smtpc_bin, tmp_path, srv, big)
    assert rc == 0, err
    assert out.startswith(b"sent to 1 recipient"), out
    e = srv.envelopes[1]
    assert len(e.data) == BIG and hashlib.sha256(e.data).hexdigest() == digest
    opts = [o.upper() for o in e.mail_options]
    assert f"SIZE={BIG}" in opts, opts
    assert ("BODY=8BITMIME" in opts) == eight_bit, opts
    # the whole message in memory would add at least BIG
    assert big_kib - small_kib < 8 * 1024, (small_kib, big_kib)
    if not sanitized():
        assert big_kib < 16 * 1024, big_kib


def test_big_message_file_to_pickup_and_dump(smtpc_bin, tmp_path):
    big = tmp_path / "big.eml"
    digest = write_message(big, BIG, True)
    base = ("send", "--from", "a@example.org", "--to", "b@example.org", "--message", str(big))
    rc, _, err, kib = run_rss(smtpc_bin, tmp_path, *base, "--pickup-dir", str(tmp_path / "p"))
    assert rc == 0, err
    raw = next((tmp_path / "p").glob("*.eml")).read_bytes()
    # the pickup file: the envelope lines, then the message as is
    assert raw.endswith(b"X-Receiver: b@example.org\r\n" + big.read_bytes())
    if not sanitized():
        assert kib < 16 * 1024, kib
    rc, out, err, kib = run_rss(smtpc_bin, tmp_path, *base, "--dump")
    assert rc == 0, err
    assert hashlib.sha256(out).hexdigest() == digest
    if not sanitized():
        assert kib < 16 * 1024, kib


def test_message_file_sent_again_with_count(smtpc_bin, tmp_path, aiosmtpd):
    # the file is read afresh for each copy on the kept connection
    srv = aiosmtpd()
    m = b"From: a@example.org\r\nSubject: twice\r\n\r\n.dot\r\nbody\r\n"
    (tmp_path / "m.eml").write_bytes(m)
    rc, _, err, _ = run_rss(smtpc_bin, tmp_path, "send", "--server", f"127.0.0.1:{srv.port}",
                            "--tls", "none", "--from", "a@example.org", "--to", "b@example.org",
                            "--message", "m.eml", "--count", "2")
    assert rc == 0, err
    assert [e.data for e in srv.envelopes] == [m, m]


def test_message_over_the_limit_is_refused_without_reading(smtpc_bin, tmp_path):
    # a sparse file beyond the CLI's 512 MiB limit: refused at once (EX_DATAERR)
    big = tmp_path / "huge.eml"
    with open(big, "wb") as f:
        f.truncate((512 << 20) + 1)
    rc, _, err, kib = run_rss(smtpc_bin, tmp_path, "send", "--from", "a@example.org", "--to",
                              "b@example.org", "--message", str(big), "--pickup-dir", str(tmp_path / "p"))
    assert rc == 65, err
    assert b"huge.eml" in err
    if not sanitized():
        assert kib < 16 * 1024, kib


def test_message_from_a_fifo_is_read_once(smtpc_bin, tmp_path):
    # not a regular file: read to its end once and held, as before
    fifo = tmp_path / "m.fifo"
    os.mkfifo(fifo)
    m = b"From: a@example.org\r\nSubject: fifo\r\n\r\nbody \xc3\xa9\r\n"
    p = subprocess.Popen([smtpc_bin, "send", "--from", "a@example.org", "--to", "b@example.org",
                          "--message", str(fifo), "--pickup-dir", str(tmp_path / "p")],
                         cwd=tmp_path, env=clean_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    with open(fifo, "wb") as f:
        f.write(m)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    raw = next((tmp_path / "p").glob("*.eml")).read_bytes()
    assert raw.endswith(b"X-Receiver: b@example.org\r\n" + m)


def test_message_file_that_shrinks_is_not_sent_truncated(smtpc_bin, tmp_path, scripted):
    # the file is cut in half while the server holds back its 354: the body
    # is read at DATA, finds the file short of its size, and the message
    # never gets its final dot
    m = tmp_path / "m.eml"
    m.write_bytes(b"From: a@example.org\r\nSubject: s\r\n\r\n" + b"line of the body\r\n" * 1000)
    srv = scripted([("send", b"220 hi\r\n"), ("expect", rb"^EHLO "), ("send", b"250 hi\r\n"),
                    ("expect", rb"^MAIL FROM:"), ("send", b"250 ok\r\n"),
                    ("expect", rb"^RCPT TO:"), ("send", b"250 ok\r\n"),
                    ("expect", rb"^DATA$"), ("sleep", 2), ("send", b"354 go\r\n"), ("hang",)])
    p = subprocess.Popen([smtpc_bin, "send", "--server", f"127.0.0.1:{srv.port}", "--tls", "none",
                          "--from", "a@example.org", "--to", "b@example.org", "--message", str(m),
                          "--timeout", "20s"], cwd=tmp_path, env=clean_env(tmp_path),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while b"\r\nDATA\r\n" not in srv.received and time.monotonic() < deadline:
        time.sleep(0.01)
    os.truncate(m, m.stat().st_size // 2)
    out, err = p.communicate(timeout=120)
    srv.wait()
    assert p.returncode != 0, (out, err)
    assert b"shrank" in err, err
    body = srv.received.split(b"\r\nDATA\r\n")[1]
    assert b"\r\n.\r\n" not in body


def test_message_from_stdin_redirected_from_a_file_is_streamed(smtpc_bin, tmp_path, aiosmtpd):
    # "--message - < file": standard input is a regular file, streamed from
    # its current offset (here past a first line the caller already read)
    srv = aiosmtpd()
    big = tmp_path / "big.eml"
    junk = b"junk line read by the caller\n"
    digest = write_message(big, BIG, True)
    whole = tmp_path / "whole.eml"
    with open(whole, "wb") as f, open(big, "rb") as g:
        f.write(junk)
        while chunk := g.read(1 << 20):
            f.write(chunk)
    with open(whole, "rb") as f:
        f.seek(len(junk))
        rc, _, err, kib = run_rss(smtpc_bin, tmp_path, "send", "--server", f"127.0.0.1:{srv.port}",
                                  "--tls", "none", "--from", "a@example.org", "--to", "b@example.org",
                                  "--message", "-", stdin=f)
    assert rc == 0, err
    e = srv.envelopes[0]
    assert len(e.data) == BIG and hashlib.sha256(e.data).hexdigest() == digest
    opts = [o.upper() for o in e.mail_options]
    assert f"SIZE={BIG}" in opts and "BODY=8BITMIME" in opts, opts
    if not sanitized():
        assert kib < 16 * 1024, kib
