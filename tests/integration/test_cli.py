"""The smtpc command line: option parsing, usage errors, exit statuses, JSON
reports, help, composing (--dump), and the pickup directory delivery."""
import email
import email.policy
import json
import os
import subprocess

import pytest


def clean_env(tmp_path, **extra):
    """An environment without the user's configuration or SMTPC_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMTPC_")}
    env["HOME"] = str(tmp_path)
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")
    env["SMTPC_CONFIG"] = "/dev/null"
    env.update(extra)
    return env


def run(smtpc_bin, tmp_path, *args, input=None, env=None):
    return subprocess.run([smtpc_bin, *args], cwd=tmp_path, input=input, capture_output=True,
                          timeout=30, env=env or clean_env(tmp_path))


BASE = ("send", "--from", "a@example.org", "--to", "b@example.org")


def eml(tmp_path, d="outbox"):
    files = sorted((tmp_path / d).glob("*.eml"))
    assert len(files) == 1, files
    return files[0].read_bytes()


def test_version(smtpc_bin, tmp_path):
    r = run(smtpc_bin, tmp_path, "--version")
    assert r.returncode == 0
    assert r.stdout.decode().startswith("smtpc 0.")


def test_help_has_five_jobs(smtpc_bin, tmp_path):
    r = run(smtpc_bin, tmp_path, "help")
    assert r.returncode == 0
    out = r.stdout.decode()
    for job in ("send a text mail", "send with attachments", "use as sendmail",
                "check a server", "queue offline, flush later"):
        assert job in out
    assert "smtpc sendmail -t" in out and "smtpc probe" in out and "smtpc queue flush" in out
    for topic in ("send", "probe", "queue", "sendmail", "exit"):
        r = run(smtpc_bin, tmp_path, "help", topic)
        assert r.returncode == 0 and r.stdout, topic
    assert b"--attach FILE" in run(smtpc_bin, tmp_path, "help", "send").stdout
    assert b"75  temporary failure" in run(smtpc_bin, tmp_path, "help", "exit").stdout
    assert run(smtpc_bin, tmp_path, "send", "--help").returncode == 0
    assert run(smtpc_bin, tmp_path, "help", "nope").returncode == 64


@pytest.mark.parametrize("args,needle", [
    (("send", "--from", "a@example.org", "--to", "b@example.org", "--bogus"), b"unknown option --bogus"),
    (("send", "--from", "a@example.org", "--to"), b"missing value for --to"),
    (("send", "--from", "a@example.org", "--to", "b@example.org", "--json=yes"), b"takes no value: --json"),
    (("send", "--from", "a@example.org", "--from", "c@example.org", "--to", "b@example.org"), b"given twice: --from"),
    (("send", "--from", "a@example.org", "--to", "b@example.org", "stray"), b"unexpected argument \"stray\""),
    (("send", "--from", "a@example.org", "--to", "b@example.org", "--tls", "ssl"), b"--tls: \"ssl\" is not one of"),
    (("send", "--from", "a@example.org", "--to", "b@example.org", "--server", "::1"), b"--server"),
    (("send", "--from", "a@example.org", "--to", "b@example.org", "--timeout", "soon"), b"--timeout"),
    (("send", "--from", "a@example.org", "--to", "b@example.org", "--text", "x", "--text-file", "f"), b"choose one"),
    (("send", "--from", "a@example.org", "--to", "b@example.org", "--message", "m", "--subject", "s"), b"--subject cannot be used with --message"),
    (("send", "--from", "a@example.org", "--to", "b@example.org", "--server", "h", "--pickup-dir", "d"), b"choose one of"),
    (("send", "--from", "a@example.org", "--to", "b@example.org", "--count", "0"), b"--count"),
    (("send", "--from", "a@example.org", "--to", "b@example.org", "--priority", "urgent", "--text", "x"), b"--priority"),
    (("send", "--to", "b@example.org"), b"a sender"),
    (("send", "--from", "a@example.org"), b"at least"),
    (("probe", "--subject", "x"), b"not an option of this command: --subject"),
    (("bogus",), b"unknown command bogus"),
    ((), b"usage:"),
])
def test_usage_errors_exit_64(smtpc_bin, tmp_path, args, needle):
    r = run(smtpc_bin, tmp_path, *args)
    assert r.returncode == 64, r.stderr
    assert needle in r.stderr
    assert not (tmp_path / "outbox").exists()


@pytest.mark.parametrize("opt", ["--password", "--password=hunter2", "--pass"])
def test_password_never_on_command_line(smtpc_bin, tmp_path, opt):
    args = [*BASE, opt] + ([] if "=" in opt else ["hunter2"])
    r = run(smtpc_bin, tmp_path, *args)
    assert r.returncode == 64
    assert b"--password-env" in r.stderr and b"hunter2" not in r.stderr


def test_equals_form_and_repeatable(smtpc_bin, tmp_path):
    r = run(smtpc_bin, tmp_path, "send", "--from=a@example.org", "--to=b@example.org",
            "--to", "c@example.org", "--cc=d@example.org", "--bcc", "e@example.org",
            "--bcc=f@example.org", "--reply-to=r@example.org", "--subject=x=y", "--text=t")
    assert r.returncode == 0, r.stderr
    raw = eml(tmp_path)
    head, _, body = raw.partition(b"\r\n\r\n")
    rcpts = [l.split(b": ")[1] for l in head.split(b"\r\n") if l.startswith(b"X-Receiver")]
    assert rcpts == [b"b@example.org", b"c@example.org", b"d@example.org", b"e@example.org", b"f@example.org"]
    msg = email.message_from_bytes(raw.split(b"\r\n", 6)[6], policy=email.policy.default)
    assert msg["Subject"] == "x=y"
    assert msg["To"] == "b@example.org, c@example.org"
    assert msg["Cc"] == "d@example.org"
    assert msg["Reply-To"] == "r@example.org"
    assert msg["Bcc"] is None and b"e@example.org" not in raw.split(b"Date:", 1)[1]


def test_dump_composes_without_sending(smtpc_bin, tmp_path):
    r = run(smtpc_bin, tmp_path, *BASE, "--subject", "Grüße €", "--text", "body",
            "--header", "X-Tag: one", "--header", "X-Other: two", "--priority", "high", "--dump")
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "outbox").exists()
    msg = email.message_from_bytes(r.stdout, policy=email.policy.default)
    assert msg["Subject"] == "Grüße €"
    assert "Grüße".encode() not in r.stdout  # encoded (RFC 2047), not raw 8-bit
    assert msg["X-Tag"] == "one" and msg["X-Other"] == "two"
    assert msg["X-Priority"].startswith("1")
    assert msg["Message-ID"] and msg["Date"]
    assert msg.get_content().strip() == "body"


def test_long_subject_folded_in_encoded_words(smtpc_bin, tmp_path):
    subj = "é" * 100
    r = run(smtpc_bin, tmp_path, *BASE, "--subject", subj, "--dump")
    assert r.returncode == 0
    for line in r.stdout.split(b"\r\n"):
        assert len(line) <= 998
    import re
    words = re.findall(rb"=\?[^?]+\?[bBqQ]\?[^?]*\?=", r.stdout)
    assert len(words) > 1 and all(len(w) <= 75 for w in words)
    msg = email.message_from_bytes(r.stdout, policy=email.policy.default)
    assert msg["Subject"] == subj


def test_text_file_from_stdin(smtpc_bin, tmp_path):
    r = run(smtpc_bin, tmp_path, *BASE, "--text-file", "-", input=b"from stdin\n")
    assert r.returncode == 0, r.stderr
    assert eml(tmp_path).endswith(b"\r\n\r\nfrom stdin\r\n")


def test_message_from_stdin_as_is(smtpc_bin, tmp_path):
    m = b"From: x@example.org\r\nSubject: raw\r\n\r\nbody\r\n"
    r = run(smtpc_bin, tmp_path, *BASE, "--message", "-", input=m)
    assert r.returncode == 0, r.stderr
    assert eml(tmp_path).endswith(b"X-Receiver: b@example.org\r\n" + m)


@pytest.mark.parametrize("bad", ["no-at", "a b@example.org", "a@", "@x.org", "a@x\x01.org", "a@@x.org"])
def test_bad_addresses_exit_65(smtpc_bin, tmp_path, bad):
    r = run(smtpc_bin, tmp_path, "send", "--from", "a@example.org", "--to", bad, "--text", "x")
    assert r.returncode == 65, r.stderr
    r = run(smtpc_bin, tmp_path, "send", "--from", bad, "--to", "b@example.org", "--text", "x")
    assert r.returncode == 65, r.stderr


def test_header_option_injection_refused(smtpc_bin, tmp_path):
    for h in ("X-A: b\r\nBcc: evil@example.org", "NoColon", "Bad Name: x", ": empty"):
        r = run(smtpc_bin, tmp_path, *BASE, "--header", h, "--text", "x")
        assert r.returncode == 65, (h, r.stderr)


def test_missing_input_files_exit_66(smtpc_bin, tmp_path):
    assert run(smtpc_bin, tmp_path, *BASE, "--message", "nope.eml").returncode == 66
    assert run(smtpc_bin, tmp_path, *BASE, "--text-file", "nope.txt").returncode == 66
    assert run(smtpc_bin, tmp_path, *BASE, "--config", "nope.conf").returncode == 66


def test_pickup_io_error_exit_74(smtpc_bin, tmp_path):
    (tmp_path / "file").write_text("x")
    r = run(smtpc_bin, tmp_path, *BASE, "--text", "x", "--pickup-dir", str(tmp_path / "file" / "sub"))
    assert r.returncode == 74
    assert b"cannot create" in r.stderr


def test_json_pickup(smtpc_bin, tmp_path):
    r = run(smtpc_bin, tmp_path, *BASE, "--to", "c@example.org", "--text", "x", "--json")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.decode().splitlines()
    assert len(lines) == 1
    o = json.loads(lines[0])
    assert o["ok"] is True and o["delivery"] == "pickup" and o["error"] is None
    assert [x["address"] for x in o["recipients"]] == ["b@example.org", "c@example.org"]
    assert all(x["accepted"] for x in o["recipients"])
    assert set(o) >= {"ok", "delivery", "server", "tls", "auth", "recipients", "final", "path", "error"}
    assert (tmp_path / o["path"]).exists()


def test_json_error_object(smtpc_bin, tmp_path):
    (tmp_path / "file").write_text("x")
    r = run(smtpc_bin, tmp_path, *BASE, "--text", "x", "--json", "--pickup-dir",
            str(tmp_path / "file" / "sub"))
    assert r.returncode == 74
    o = json.loads(r.stdout)
    assert o["ok"] is False
    assert o["error"]["class"] == "transient" and o["error"]["code"] == "SMTPC_EIO"
    assert o["error"]["exit"] == 74
    assert "cannot create" in o["error"]["message"]
    assert r.stderr == b""  # with --json the report is the JSON object


def test_count_sends_n_messages(smtpc_bin, tmp_path):
    r = run(smtpc_bin, tmp_path, *BASE, "--text", "x", "--count", "3", "--json")
    assert r.returncode == 0
    assert len([json.loads(l) for l in r.stdout.decode().splitlines()]) == 3
    files = list((tmp_path / "outbox").glob("*.eml"))
    assert len(files) == 3
    ids = {email.message_from_bytes(f.read_bytes().split(b"\r\n", 2)[2])["Message-ID"] for f in files}
    assert len(ids) == 3  # each copy is its own message


@pytest.mark.parametrize("opt", [["--trace-body"], ["--trace"]])
def test_trace_options_accepted_with_pickup(smtpc_bin, tmp_path, opt):
    # nothing is "not supported yet" any more; a pickup has no dialogue to trace
    r = run(smtpc_bin, tmp_path, *BASE, "--text", "x", *opt)
    assert r.returncode == 0, r.stderr
    assert r.stderr == b""


def dump(smtpc_bin, tmp_path, *args):
    r = run(smtpc_bin, tmp_path, *BASE, "--dump", *args)
    assert r.returncode == 0, r.stderr
    return email.message_from_bytes(r.stdout, policy=email.policy.default), r.stdout


def test_html_and_text_alternative(smtpc_bin, tmp_path):
    msg, raw = dump(smtpc_bin, tmp_path, "--text", "plain", "--html", "<p>rich</p>")
    assert msg.get_content_type() == "multipart/alternative"
    assert msg.get_body(("plain",)).get_content().strip() == "plain"
    assert msg.get_body(("html",)).get_content().strip() == "<p>rich</p>"
    (tmp_path / "b.html").write_text("<b>from file</b>")
    msg, _ = dump(smtpc_bin, tmp_path, "--html-file", "b.html")
    assert msg.get_body(("html",)).get_content().strip() == "<b>from file</b>"


def test_attachments_and_inline(smtpc_bin, tmp_path):
    pdf = bytes(range(256)) * 40
    (tmp_path / "report.pdf").write_bytes(pdf)
    (tmp_path / "data.csv").write_text("a,b\n1,2\n")
    (tmp_path / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    msg, raw = dump(smtpc_bin, tmp_path, "--text", "see attached", "--html", '<img src="cid:logo.png">',
                    "--attach", "report.pdf", "--attach", "data.csv", "--inline", "logo.png")
    for line in raw.split(b"\r\n"):
        assert len(line) <= 998
    atts = {a.get_filename(): a.get_content() for a in msg.iter_attachments()}
    assert atts["report.pdf"] == pdf
    assert atts["data.csv"].replace("\r\n", "\n") == "a,b\n1,2\n"
    imgs = [p for p in msg.walk() if p.get("Content-ID")]
    assert len(imgs) == 1 and imgs[0]["Content-ID"].strip("<>") == "logo.png"
    assert imgs[0].get_content().startswith(b"\x89PNG")


def test_missing_attachment_exit_66(smtpc_bin, tmp_path):
    for opt in (["--attach", "x.pdf"], ["--inline", "i.png"], ["--html-file", "x.html"]):
        r = run(smtpc_bin, tmp_path, *BASE, "--text", "x", *opt)
        assert r.returncode == 66, (opt, r.stderr)
        assert not (tmp_path / "outbox").exists()


def test_display_names_and_lists(smtpc_bin, tmp_path):
    r = run(smtpc_bin, tmp_path, "send", "--from", "Zoë <zoe@example.org>", "--to",
            "bob@example.com, \"Carol C.\" <carol@example.net>", "--bcc", "Hidden <h@example.org>",
            "--text", "x", "--json")
    assert r.returncode == 0, r.stderr
    o = json.loads(r.stdout)
    assert [x["address"] for x in o["recipients"]] == ["bob@example.com", "carol@example.net", "h@example.org"]
    raw = (tmp_path / o["path"]).read_bytes()
    assert raw.startswith(b"X-Sender: zoe@example.org\r\n")
    msg = email.message_from_bytes(raw.split(b"\r\n", 4)[4], policy=email.policy.default)
    assert msg["From"].addresses[0].display_name == "Zoë"
    assert msg["Bcc"] is None


def test_reserved_options_are_parsed(smtpc_bin, tmp_path):
    # accepted by the parser (they take a value / are flags) and only refused
    # when the chosen delivery needs them; pickup delivery ignores connection settings
    r = run(smtpc_bin, tmp_path, *BASE, "--text", "x", "--user", "u", "--password-env", "PW",
            "--password-file", "f", "--password-cmd", "c", "--oauth-token-cmd", "o", "--auth", "plain",
            "--allow-plaintext-auth", "--ca-file", "f", "--ca-path", "d", "--pin", "p", "--cert", "c",
            "--key", "k", "--insecure", "--tls-min", "1.2", "--tls-max", "1.3", "--tls-strict-version",
            "--greeting-timeout", "5s", "--timeout", "30", "--connect-timeout", "500ms",
            "--proxy", "socks5://127.0.0.1:1080", "--bind", "127.0.0.1", "-4", "-6",
            "--ehlo-name", "client.example", "--pickup-dir", "pk")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(b"written to pickup directory: pk/")


def test_smtp_without_session_says_so(smtpc_bin, tmp_path):
    r = run(smtpc_bin, tmp_path, *BASE, "--text", "x", "--server", "127.0.0.1:1", "--tls", "none")
    assert r.returncode in (69, 75), r.stderr


@pytest.mark.parametrize("page", ["smtpc.1", "smtpc-config.5"])
def test_man_pages_render_cleanly(page):
    import shutil
    from conftest import SOURCE_DIR
    if not shutil.which("groff"):
        pytest.skip("groff not installed")
    r = subprocess.run(["groff", "-mdoc", "-Tutf8", "-ww", "-z", str(SOURCE_DIR / "docs" / page)],
                       capture_output=True, timeout=60)
    assert r.returncode == 0 and r.stderr == b"", r.stderr
