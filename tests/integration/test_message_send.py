"""A MIME message sent through the session (smtpc_session_send_message) to a
real Postfix, read back from its Maildir and parsed by Python's email and
GMime: every part equals its input byte for byte. Also: the encoding follows
what the server offers, and SMTPUTF8 is checked before MAIL."""
import random
import subprocess

import pytest

from conftest import driver
from servers.postfix import postfix, postfix_server  # noqa: F401
from servers.scripted import scripted  # noqa: F401
from test_mime_parsers import check_wire, crlf, gm_leaves, gmime, py_leaves  # noqa: F401


def send(*args):
    p = subprocess.run([driver("mime"), *args], capture_output=True, timeout=120)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


@pytest.mark.parametrize("bdat", [False, True], ids=["DATA", "BDAT"])
def test_rich_message_through_postfix_parsed_back_exactly(tmp_path, postfix, gmime, bdat):
    rnd = random.Random(99)
    text = "Hello Zoë,\n\nThe report is attached. Ünïcödé.\n.a line starting with a dot\n.\nFrom me\n"
    html = '<html><body><p>Hi <b>Zoë</b> — see <img src="cid:logo@smtpc"></p></body></html>'
    logo = bytes(rnd.randrange(256) for _ in range(4000))
    report = bytes(rnd.randrange(256) for _ in range(200_000))
    notes = "naïve café notes\n" * 50
    for name, data in (("t.txt", text.encode()), ("h.html", html.encode()), ("logo.png", logo),
                       ("report.pdf", report), ("notes.txt", notes.encode())):
        (tmp_path / name).write_bytes(data)
    subject = "Quarterly report — Zoë's numbers ✓ 日本語"
    args = ["--from", "Zoë Ünïcode <zoe@bücher.example>",
            "--to", '"Bob Bäcker" <bob@example.org>',
            "--cc", "carol@example.org",
            "--subject", subject,
            "--text-file", str(tmp_path / "t.txt"),
            "--html-file", str(tmp_path / "h.html"),
            "--inline", str(tmp_path / "logo.png") + ":logo@smtpc",
            "--attach", str(tmp_path / "report.pdf") + ":Bericht für Zoë.pdf",
            "--attach-mem", str(tmp_path / "notes.txt") + ":notes.txt:text/plain",
            "--send", f"127.0.0.1:{postfix.port}"]
    if bdat:
        args.append("--bdat")
    rc, out, err = send(*args)
    assert rc == 0, out + err
    assert "SEND:SMTPC_OK" in out
    msgs = postfix.wait_for(2)  # one copy per recipient mailbox (catch-all Maildir)
    assert sorted(m.rcpt_to for m in msgs) == ["bob@example.org", "carol@example.org"]
    assert {m.mail_from for m in msgs} == {"zoe@xn--bcher-kva.example"}
    raw = msgs[0].original_crlf
    check_wire(raw)

    expected = [
        ("text/plain", None, None, crlf(text.encode())),
        ("text/html", None, None, html.encode()),
        ("image/png", "logo.png", "<logo@smtpc>", logo),
        ("application/pdf", "Bericht für Zoë.pdf", None, report),
        ("text/plain", "notes.txt", None, notes.encode()),  # attachments are byte-exact
    ]
    msg, leaves = py_leaves(raw)
    assert str(msg["subject"]) == subject
    assert msg["from"].addresses[0].display_name == "Zoë Ünïcode"
    assert msg["to"].addresses[0].display_name == "Bob Bäcker"
    assert [(l[0], l[1]) for l in leaves] == [(e[0], e[1]) for e in expected]
    for got, exp in zip(leaves, expected):
        if exp[2]:
            assert got[2] == exp[2]
        assert got[3] == exp[3], exp[0]

    gm = gm_leaves(gmime, raw, tmp_path)
    assert gm["subject"] == subject
    assert [(p[0], p[1]) for p in gm["parts"]] == [(e[0], e[1]) for e in expected]
    for got, exp in zip(gm["parts"], expected):
        assert got[3] == exp[3], exp[0]


def test_8bit_only_when_offered(tmp_path, postfix, scripted):
    (tmp_path / "t.txt").write_text("Grüße aus Köln — naïve café\n" * 3)
    common = ["--from", "a@example.org", "--to", "b@example.org", "--subject", "x",
              "--text-file", str(tmp_path / "t.txt")]
    # Postfix offers 8BITMIME: BODY=8BITMIME and an 8bit text part
    rc, out, err = send(*common, "--send", f"127.0.0.1:{postfix.port}")
    assert rc == 0, out + err
    raw = postfix.wait_for(1)[0].original_crlf
    assert b"Content-Transfer-Encoding: 8bit" in raw
    assert "Grüße".encode() in raw
    # a server without 8BITMIME gets a 7-bit message and no BODY= parameter
    srv = scripted([
        ("send", b"220 x\r\n"), ("expect", rb"^EHLO "), ("send", b"250-x\r\n250 PIPELINING\r\n"),
        ("expect", rb"^MAIL FROM:<a@example.org>$"), ("expect", rb"^RCPT TO:<b@example.org>$"),
        ("expect", rb"^DATA$"), ("send", b"250 ok\r\n250 ok\r\n354 go\r\n"),
        ("expect_data",), ("send", b"250 queued\r\n"), ("expect", rb"^QUIT$"), ("send", b"221 bye\r\n"),
    ])
    rc, out, err = send(*common, "--send", f"127.0.0.1:{srv.port}")
    srv.wait()
    assert rc == 0, out + err
    assert srv.errors == []
    body = srv.messages[0]
    assert all(b < 0x80 for b in body), "8-bit bytes sent to a server without 8BITMIME"
    assert b"quoted-printable" in body.lower() or b"base64" in body.lower()


def test_smtputf8_refused_before_mail_when_not_offered(tmp_path, scripted):
    srv = scripted([
        ("send", b"220 x\r\n"), ("expect", rb"^EHLO "), ("send", b"250-x\r\n250 8BITMIME\r\n"),
        ("expect", rb"^QUIT$"), ("send", b"221 bye\r\n"),
    ])
    rc, out, err = send("--from", "zoë@example.org", "--to", "b@example.org", "--subject", "x",
                        "--text-file", "/dev/null", "--send", f"127.0.0.1:{srv.port}")
    srv.wait()
    assert rc == 1
    assert "SEND:SMTPC_EUNSUPPORTED" in out
    assert "SMTPUTF8" in out
    assert b"MAIL" not in srv.received


def test_smtputf8_sent_when_needed_and_offered(tmp_path, postfix):
    rc, out, err = send("--from", "Zoë <zoë@example.org>", "--to", "b@example.org",
                        "--subject", "ünï", "--text-file", "/dev/null",
                        "--send", f"127.0.0.1:{postfix.port}")
    assert rc == 0, out + err
    m = postfix.wait_for(1)[0]
    assert m.mail_from == "zoë@example.org"
    assert "From: Zoë <zoë@example.org>".encode() in m.original  # raw UTF-8 header (RFC 6532)
