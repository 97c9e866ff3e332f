"""The CLI against a hostile or broken server (issue 14, items 8 and 9):
exit status of a malformed reply, and server text that must never drive the
terminal (C0 and C1 controls, invalid UTF-8) in errors, --trace, --json and
smtpc probe."""
import json
import os
import subprocess

import pytest

from servers.scripted import scripted  # noqa: F401

FROM = "a@example.org"


def env_for(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMTPC_")}
    env["HOME"] = str(tmp_path)
    env["SMTPC_CONFIG"] = "/dev/null"
    return env


def run(smtpc_bin, tmp_path, *args):
    return subprocess.run([smtpc_bin, *args], cwd=tmp_path, capture_output=True, timeout=120,
                          env=env_for(tmp_path))


def send(smtpc_bin, tmp_path, port, *args):
    return run(smtpc_bin, tmp_path, "send", "--server", f"127.0.0.1:{port}", "--tls", "none",
               "--from", FROM, "--to", "b@example.org", *args)


# ---- item 8: a malformed server is EX_PROTOCOL (76), not EX_DATAERR (65) ----

GREET = [("send", b"220 hi\r\n"), ("expect", rb"^EHLO "), ("send", b"250 hi\r\n")]

MALFORMED = {
    "reply line over the limit": [("send", b"220 " + b"x" * 70000 + b"\r\n")],
    "endless greeting line": [("flood", b"220 " + b"x" * 4096, 100000)],
    "endless multi-line reply": [("send", b"220 hi\r\n"), ("expect", rb"^EHLO "),
                                 ("flood", b"250-endless\r\n", 1000000)],
    "endless reply to MAIL": GREET + [("expect", rb"^MAIL "), ("flood", b"250-x\r\n", 1000000)],
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_reply_is_a_protocol_error(smtpc_bin, tmp_path, scripted, case):
    srv = scripted(MALFORMED[case])
    r = send(smtpc_bin, tmp_path, srv.port, "--text", "x")
    assert r.returncode == 76, (r.returncode, r.stderr)
    assert b"server reply" in r.stderr
    srv = scripted(MALFORMED[case])
    r = send(smtpc_bin, tmp_path, srv.port, "--text", "x", "--json")
    assert r.returncode == 76, (r.returncode, r.stderr)
    o = json.loads(r.stdout)
    assert o["error"]["exit"] == 76 and o["error"]["class"] == "protocol"
    assert "server reply" in o["error"]["message"]


def test_malformed_reply_in_probe_is_a_protocol_error(smtpc_bin, tmp_path, scripted):
    srv = scripted(MALFORMED["endless multi-line reply"])
    r = run(smtpc_bin, tmp_path, "probe", "--tls", "none", f"127.0.0.1:{srv.port}")
    assert r.returncode == 76, (r.returncode, r.stderr)


def test_own_body_line_over_998_stays_dataerr(smtpc_bin, tmp_path, scripted):
    # the caller's data over a limit (the same SMTPC_ELIMIT) is still 65
    srv = scripted(GREET + [("expect", rb"^MAIL "), ("send", b"250 ok\r\n"),
                            ("expect", rb"^RCPT "), ("send", b"250 ok\r\n"),
                            ("expect", rb"^DATA"), ("send", b"354 go\r\n"), ("hang",)])
    (tmp_path / "m.eml").write_bytes(b"Subject: x\r\n\r\n" + b"y" * 2000 + b"\r\n")
    r = send(smtpc_bin, tmp_path, srv.port, "--message", "m.eml")
    assert r.returncode == 65, (r.returncode, r.stderr)
    assert b"998" in r.stderr


# ---- item 9: server text never drives the terminal ---------------------------

CSI = b"\xc2\x9b"  # U+009B, a terminal's CSI in UTF-8
EVIL = CSI + b"2J\x1b[31m\xc2\x85 \x9b\xff caf\xc3\xa9"  # C1, C0, bytes that are not UTF-8, real UTF-8


def assert_clean(out):
    """No C0 (but LF), DEL or C1 control and nothing that is not UTF-8."""
    text = out.decode("utf-8")  # raises on invalid UTF-8
    bad = [c for c in text if (ord(c) < 0x20 and c != "\n") or 0x7f <= ord(c) <= 0x9f]
    assert not bad, (bad, text)


def refusing(evil=EVIL):
    return [("send", b"220 hi " + evil + b"\r\n"), ("expect", rb"^EHLO "),
            ("send", b"250-hi " + evil + b"\r\n250 PIPELINING\r\n"),
            ("expect", rb"^MAIL "), ("expect", rb"^RCPT "), ("expect", rb"^DATA"),
            ("send", b"250 ok\r\n550 5.1.1 no " + evil + b"\r\n554 no valid recipients\r\n"),
            ("expect", rb"^(RSET|QUIT)"), ("send", b"250 ok\r\n"), ("close",)]


def test_error_text_and_trace_are_escaped(smtpc_bin, tmp_path, scripted):
    srv = scripted(refusing())
    r = send(smtpc_bin, tmp_path, srv.port, "--text", "x", "--trace")
    assert r.returncode == 69, (r.returncode, r.stderr)
    assert_clean(r.stderr)
    assert_clean(r.stdout)
    err = r.stderr.decode()
    assert "\\u009b2J\\x1b[31m\\u0085 \\x9b\\xff caf\u00e9" in err  # visible, and the UTF-8 kept
    assert "S: 220 hi \\u009b2J" in err  # the trace


def test_json_is_valid_and_escaped(smtpc_bin, tmp_path, scripted):
    srv = scripted(refusing())
    r = send(smtpc_bin, tmp_path, srv.port, "--text", "x", "--json")
    assert r.returncode == 69, (r.returncode, r.stderr)
    assert_clean(r.stdout)
    assert b"\\u009b2J\\u001b[31m\\u0085 \\ufffd\\ufffd caf\xc3\xa9" in r.stdout
    o = json.loads(r.stdout)
    assert o["recipients"][0]["text"].endswith("no \x9b2J\x1b[31m\x85 \ufffd\ufffd caf\u00e9")


def probing(evil=EVIL):
    return [("send", b"220 hi " + evil + b"\r\n"), ("expect", rb"^EHLO "),
            ("send", b"250-hi " + evil + b"\r\n250 X-" + evil + b"\r\n"),
            ("expect", rb"^QUIT"), ("send", b"221 bye\r\n"), ("close",)]


@pytest.mark.parametrize("json_out", [False, True])
def test_probe_is_escaped(smtpc_bin, tmp_path, scripted, json_out):
    srv = scripted(probing())
    r = run(smtpc_bin, tmp_path, "probe", "--tls", "none", f"127.0.0.1:{srv.port}",
            *(["--json"] if json_out else []))
    assert r.returncode == 0, (r.returncode, r.stderr)
    assert_clean(r.stdout)
    assert_clean(r.stderr)
    if json_out:
        o = json.loads(r.stdout)
        assert o["greeting"]["lines"][0].startswith("hi \x9b2J")
    else:
        assert "greeting: 220 hi \\u009b2J" in r.stdout.decode()
