"""Loading an existing message (sendmail -t): the envelope from its headers,
Bcc removed, the body passed through unchanged except line ends."""
import email
import email.policy
import os
import subprocess

from conftest import driver


def load(tmp_path, raw, *extra):
    f = tmp_path / "in.eml"
    f.write_bytes(raw)
    p = subprocess.run([driver("mime"), "--load", str(f), "--print-envelope", "--twice", *extra],
                       capture_output=True, timeout=120)
    return p.returncode, p.stdout, p.stderr.decode(errors="replace")


def envelope(err):
    mail = [l[5:] for l in err.splitlines() if l.startswith("MAIL:")]
    rcpt = [l[5:] for l in err.splitlines() if l.startswith("RCPT:")]
    return mail[0], rcpt


def test_envelope_and_bcc_removed(tmp_path):
    raw = (b"From: \"Doe, J.\" <j@example.org>\n"
           b"To: a@example.com,\n  Team: b@example.com, c@example.com;\n"
           b"Cc: =?utf-8?q?Zo=C3=AB?= <z@example.net>\n"
           b"BCC: hidden@example.org,\n\tsecret@example.org\n"
           b"Subject: hi\nDate: Mon, 1 Jan 2024 00:00:00 +0000\nMessage-ID: <x@example.org>\n\n"
           b"line 1\nBcc: this is body text\r\n.\nlast line without newline")
    rc, out, err = load(tmp_path, raw)
    assert rc == 0, err
    mail, rcpt = envelope(err)
    assert mail == "j@example.org"
    assert rcpt == ["a@example.com", "b@example.com", "c@example.com", "z@example.net",
                    "hidden@example.org", "secret@example.org"]
    head, body = out.split(b"\r\n\r\n", 1)
    assert b"hidden" not in head and b"secret" not in head and b"BCC" not in head
    assert body == b"line 1\r\nBcc: this is body text\r\n.\r\nlast line without newline\r\n"
    assert b"\n" not in out.replace(b"\r\n", b"")
    msg = email.message_from_bytes(out, policy=email.policy.default)
    assert msg["message-id"] == "<x@example.org>"
    assert msg["date"] == "Mon, 01 Jan 2024 00:00:00 +0000"
    assert len(msg.get_all("date")) == 1


def test_sender_wins_and_missing_fields_added(tmp_path):
    raw = b"Sender: s@example.org\r\nFrom: f@example.org\r\nTo: t@example.org\r\n\r\nbody\r\n"
    rc, out, err = load(tmp_path, raw)
    assert rc == 0, err
    assert envelope(err)[0] == "s@example.org"
    msg = email.message_from_bytes(out, policy=email.policy.default)
    assert msg["date"] and msg["message-id"].endswith("@example.org>")


def test_obsolete_lists(tmp_path):
    raw = b"From: f@example.org\nTo: undisclosed-recipients:;\nCc: a@example.org,, b@example.org,\nBcc: c@example.org\n\nx\n"
    rc, out, err = load(tmp_path, raw)
    assert rc == 0, err
    assert envelope(err)[1] == ["a@example.org", "b@example.org", "c@example.org"]


def test_errors(tmp_path):
    rc, _, err = load(tmp_path, b"To: t@example.org\n\nno from\n")
    assert rc != 0 and "no From" in err
    rc, _, err = load(tmp_path, b"From: f@example.org\nSubject: x\n\nno rcpt\n")
    assert rc != 0 and "no recipient" in err
    rc, _, err = load(tmp_path, b"From: f@example.org\nTo: a@b@c\n\n")
    assert rc != 0 and "To:" in err and "more than one '@'" in err
    rc, _, err = load(tmp_path, b"From: f@example.org\nTo: t@example.org\nthis is not a header\n\n")
    assert rc != 0 and "malformed header line" in err and "line 3" in err
    rc, _, err = load(tmp_path, b"From: f@example.org\nTo: t@example.org\nX: " + b"a" * (1 << 20) + b"\n\n")
    assert rc != 0 and "SMTPC_ELIMIT" in err


def test_big_body_streams(tmp_path):
    """A 20 MB body with bare LF line ends passes through, normalised."""
    line = os.urandom(300).hex().encode()[:500]
    body = (line + b"\n") * 40000
    rc, out, err = load(tmp_path, b"From: f@example.org\nTo: t@example.org\n\n" + body)
    assert rc == 0, err
    assert out.split(b"\r\n\r\n", 1)[1] == body.replace(b"\n", b"\r\n")
