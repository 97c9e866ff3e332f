"""The writer's output checked by two real MIME parsers: Python's email
package (policy=default) and GMime 3 (a small C checker compiled here).
Every decoded part must equal its input byte for byte."""
import email
import email.policy
import os
import pathlib
import random
import re
import shutil
import subprocess

import pytest

from conftest import SOURCE_DIR, driver


def crlf(b):
    return re.sub(rb"\r\n|\r|\n", b"\r\n", b)


@pytest.fixture(scope="module")
def gmime(tmp_path_factory):
    if shutil.which("pkg-config") is None:
        pytest.fail("pkg-config missing")
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "gmime-3.0"], capture_output=True, text=True)
    assert flags.returncode == 0, "libgmime-3.0-dev missing (scripts/deps/mime.txt)"
    out = tmp_path_factory.mktemp("gmime") / "gmime_check"
    src = SOURCE_DIR / "tests" / "gmime" / "gmime_check.c"
    subprocess.run(["cc", "-O1", "-o", str(out), str(src)] + flags.stdout.split(), check=True)
    return str(out)


def write(tmp_path, *args):
    p = subprocess.run([driver("mime"), "--twice", "--print-envelope", *args], capture_output=True, timeout=300)
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    return p.stdout, p.stderr.decode()


def check_wire(raw):
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert b"\r" not in raw.replace(b"\r\n", b"")
    for line in raw.split(b"\r\n"):
        assert len(line) <= 998
    assert raw.endswith(b"\r\n")


def py_leaves(raw, utf8=False):
    if utf8:
        msg = email.message_from_string(raw.decode("utf-8"), policy=email.policy.default)
    else:
        msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert not msg.defects, msg.defects
    leaves = []

    def walk(part):
        assert not part.defects, (part.get_content_type(), part.defects)
        if part.get_content_type() == "message/rfc822":
            leaves.append((part.get_content_type(), part.get_filename(), part.get("Content-ID"),
                           part.get_payload(0).as_bytes(policy=email.policy.SMTP)))
        elif part.is_multipart():
            for sub in part.get_payload():
                walk(sub)
        else:
            leaves.append((part.get_content_type(), part.get_filename(), part.get("Content-ID"),
                           part.get_payload(decode=True)))

    walk(msg)
    return msg, leaves


def gm_leaves(gmime, raw, tmp_path):
    d = tmp_path / ("gm%d" % random.randrange(1 << 30))
    d.mkdir()
    f = d / "msg.eml"
    f.write_bytes(raw)
    p = subprocess.run([gmime, str(f), str(d)], capture_output=True, timeout=120)
    assert p.returncode == 0, p.stderr
    info = {"parts": []}
    for line in p.stdout.decode().splitlines():
        fields = line.split("\t")
        if fields[0] == "part":
            n, ctype, fn, cid = fields[1:5]
            info["parts"].append((ctype, None if fn == "-" else fn, None if cid == "-" else cid,
                                  (d / n).read_bytes()))
        else:
            info[fields[0]] = fields[1] if len(fields) > 1 else ""
    return info


def test_full_message_both_parsers(tmp_path, gmime):
    rnd = random.Random(1234)
    text = "Hello Zoë,\n\nHere is the report. Ünïcödé everywhere.\n.dot line\nFrom here\ntrailing space \n"
    html = '<html><body><p>Hi <b>Zoë</b></p><img src="cid:logo@x"></body></html>'
    (tmp_path / "t.txt").write_text(text)
    (tmp_path / "h.html").write_text(html)
    logo = bytes(rnd.randrange(256) for _ in range(5000))
    (tmp_path / "logo.png").write_bytes(logo)
    binary = bytes(rnd.randrange(256) for _ in range(100_003))
    (tmp_path / "data.bin").write_bytes(binary)
    small = bytes(rnd.randrange(256) for _ in range(58))
    (tmp_path / "small.bin").write_bytes(small)
    cal = "BEGIN:VCALENDAR\nVERSION:2.0\nEND:VCALENDAR\n"
    (tmp_path / "cal.ics").write_text(cal)
    long_name = "Résumé – Überlänge " + "x" * 120 + " 日本語.pdf"
    subject = "Héllo wörld — " + "a fairly long subject line " * 6 + "日本語"
    raw, err = write(
        tmp_path,
        "--from", "Zoë Ünïcode <zoe@bücher.example>",
        "--to", 'bob@example.com, "Carol, C." <carol@example.net>',
        "--cc", "Dave <dave@example.org>",
        "--bcc", "secret@example.org",
        "--subject", subject,
        "--text-file", str(tmp_path / "t.txt"),
        "--html-file", str(tmp_path / "h.html"),
        "--alt", "text/calendar; method=REQUEST:" + str(tmp_path / "cal.ics"),
        "--inline", str(tmp_path / "logo.png") + ":logo@x",
        "--attach", str(tmp_path / "data.bin") + ":" + long_name,
        "--attach-mem", str(tmp_path / "small.bin") + ":small.bin",
        "--attach-cb", "70001:7:stream-known.bin:known",
        "--attach-cb", "12345:9:stream-unknown.dat",
        "--header", "X-Mailer:smtpc tests ✓",
        "--priority", "high",
        "--in-reply-to", "<a@example.org>",
        "--references", "<r1@example.org> <a@example.org>",
    )
    check_wire(raw)
    assert b"secret@" not in raw and b"\nBcc" not in raw
    assert "RCPT:secret@example.org" in err
    assert "MAIL:zoe@xn--bcher-kva.example" in err

    def rnd_bytes(n, seed):
        out = bytearray()
        state = seed
        for _ in range(n):
            state = (state * 6364136223846793005 + 1442695040888963407) & (2**64 - 1)
            out.append(state >> 56)
        return bytes(out)

    expected = [
        ("text/plain", None, None, crlf(text.encode())),
        ("text/calendar", None, None, crlf(cal.encode())),
        ("text/html", None, None, html.encode()),
        ("image/png", "logo.png", "<logo@x>", logo),
        ("application/pdf", long_name, None, binary),
        ("application/octet-stream", "small.bin", None, small),
        ("application/octet-stream", "stream-known.bin", None, rnd_bytes(70001, 7)),
        ("application/octet-stream", "stream-unknown.dat", None, rnd_bytes(12345, 9)),
    ]
    msg, leaves = py_leaves(raw)
    assert str(msg["subject"]) == subject
    assert msg["from"].addresses[0].display_name == "Zoë Ünïcode"
    assert msg["from"].addresses[0].addr_spec == "zoe@xn--bcher-kva.example"
    assert [a.display_name for a in msg["to"].addresses] == ["", "Carol, C."]
    assert str(msg["x-mailer"]) == "smtpc tests ✓"
    assert msg["X-Priority"] == "1 (Highest)"
    assert msg.get_content_type() == "multipart/mixed"
    assert len(leaves) == len(expected)
    for got, exp in zip(leaves, expected):
        assert got[0] == exp[0]
        assert got[1] == exp[1]
        if exp[2]:
            assert got[2] == exp[2]
        assert got[3] == exp[3], exp[0]

    gm = gm_leaves(gmime, raw, tmp_path)
    assert gm["subject"] == subject
    assert gm["from"] == "Zoë Ünïcode <zoe@xn--bcher-kva.example>"
    assert len(gm["parts"]) == len(expected)
    for got, exp in zip(gm["parts"], expected):
        assert got[0] == exp[0]
        assert got[1] == exp[1]
        if exp[2]:
            assert "<" + got[2] + ">" == exp[2]
        assert got[3] == exp[3], exp[0]


@pytest.mark.parametrize("kind", ["ascii", "ascii_long", "mostly_ascii", "cjk", "long_lines", "binaryish"])
@pytest.mark.parametrize("eightbit", [False, True])
def test_text_encodings(tmp_path, gmime, kind, eightbit):
    rnd = random.Random(hash(kind) & 0xFFFF)
    if kind == "ascii":
        text, cte = "plain ascii\nsecond line\n", "7bit"
    elif kind == "ascii_long":
        text, cte = ("x" * 200 + " \n") * 3, "7bit" if eightbit else "quoted-printable"
    elif kind == "mostly_ascii":
        text, cte = "Caf\u00e9 au lait is the usual order in the morning.\n" * 20, "8bit" if eightbit else "quoted-printable"
    elif kind == "cjk":
        text, cte = "日本語のテキストです。\n" * 30, "8bit" if eightbit else "base64"
    elif kind == "long_lines":
        text, cte = ("word " * 2000).strip() + "\n" + "é" * 10000 + "\n" + "x" * 10000, None
    else:
        text = "".join(chr(rnd.choice([9, 32, 61, 46] + list(range(33, 127)) + [0xe9, 0x4e2d, 0x1f600]))
                       for _ in range(20000))
        text += " \t\n=\n.\nFrom me\n "
        cte = None
    (tmp_path / "t.txt").write_text(text)
    args = ["--from", "a@example.org", "--to", "b@example.org", "--subject", "x",
            "--text-file", str(tmp_path / "t.txt"), "--attach-mem", str(tmp_path / "t.txt") + ":t.txt"]
    if eightbit:
        args.append("--8bit")
    raw, _ = write(tmp_path, *args)
    check_wire(raw)
    msg, leaves = py_leaves(raw)
    body = [p for p in msg.walk() if p.get_content_type() == "text/plain"][0]
    if cte:
        assert body["content-transfer-encoding"] == cte
    assert leaves[0][3] == crlf(text.encode())
    assert leaves[1][3] == text.encode()
    gm = gm_leaves(gmime, raw, tmp_path)
    assert gm["parts"][0][3] == crlf(text.encode())
    assert gm["parts"][1][3] == text.encode()


def test_single_part_and_rfc822(tmp_path, gmime):
    inner = b"From: x@example.org\r\nTo: y@example.org\r\nSubject: inner\r\n\r\nInner body\r\n"
    (tmp_path / "inner.eml").write_bytes(inner)
    (tmp_path / "t.txt").write_text("no newline at end")
    raw, _ = write(tmp_path, "--from", "a@example.org", "--to", "b@example.org",
                   "--text-file", str(tmp_path / "t.txt"), "--message", str(tmp_path / "inner.eml"),
                   "--attach", str(tmp_path / "inner.eml"))
    check_wire(raw)
    msg, leaves = py_leaves(raw)
    assert leaves[0][3] == b"no newline at end"
    assert leaves[1][0] == "message/rfc822"
    assert leaves[1][3] == inner
    assert leaves[2][:2] == ("message/rfc822", "inner.eml") and leaves[2][3] == inner
    inner_msg = [p for p in msg.walk() if p.get_content_type() == "message/rfc822"][0].get_payload(0)
    assert str(inner_msg["subject"]) == "inner"
    gm = gm_leaves(gmime, raw, tmp_path)
    assert gm["parts"][0][3] == b"no newline at end"

    # a text-only message is a single part and still ends with CRLF
    raw, _ = write(tmp_path, "--from", "a@example.org", "--to", "b@example.org",
                   "--text-file", str(tmp_path / "t.txt"))
    check_wire(raw)
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg.get_content_type() == "text/plain"
    assert msg.get_payload(decode=True).rstrip(b"\r\n") == b"no newline at end"


def test_smtputf8_headers(tmp_path, gmime):
    raw, err = write(tmp_path, "--utf8", "--from", "Jörg <jörg@bücher.example>", "--to", "用户@例子.广告",
                     "--subject", "Grüße aus Köln", "--text-file", os.devnull)
    check_wire(raw)
    assert "SMTPUTF8:1" in err
    assert "Subject: Grüße aus Köln\r\n".encode() in raw
    assert b"=?utf-8?" not in raw
    msg, _ = py_leaves(raw, utf8=True)
    assert str(msg["subject"]) == "Grüße aus Köln"
    assert msg["from"].addresses[0].display_name == "Jörg"
    # without SMTPUTF8 the non-ASCII local part is refused before anything is written
    p = subprocess.run([driver("mime"), "--from", "jörg@example.org", "--to", "b@example.org"], capture_output=True)
    assert p.returncode != 0 and b"SMTPC_EUNSUPPORTED" in p.stderr


def test_big_attachment(tmp_path, gmime):
    """A big random attachment, read from a file, decoded by both parsers.
    8 MiB in the suite (50 MiB takes ~14 s here, mostly Python's decoder);
    SMTPC_MIME_BIG_MB=50 runs the full size."""
    size = int(os.environ.get("SMTPC_MIME_BIG_MB", "8")) * 1024 * 1024
    data = os.urandom(size)
    (tmp_path / "big.bin").write_bytes(data)
    out = tmp_path / "big.eml"
    p = subprocess.run([driver("mime"), "--from", "a@example.org", "--to", "b@example.org",
                        "--text-file", os.devnull, "--attach", str(tmp_path / "big.bin"), "--out", str(out)],
                       capture_output=True, timeout=300)
    assert p.returncode == 0, p.stderr
    raw = out.read_bytes()
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    att = [p for p in msg.walk() if p.get_filename() == "big.bin"][0]
    assert att.get_payload(decode=True) == data
    gm = gm_leaves(gmime, raw, tmp_path)
    assert gm["parts"][1][3] == data
