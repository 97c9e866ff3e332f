"""sendmail mode: 'smtpc sendmail' and a link named sendmail; -t, -f, -F, -i,
dot termination, Bcc removal, ignored options, account choice by sender."""
import email
import email.policy
import os
import subprocess

import pytest


def env_for(tmp_path, config="/dev/null"):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMTPC_")}
    env["HOME"] = str(tmp_path)
    env["SMTPC_CONFIG"] = config
    return env


def sendmail(smtpc_bin, tmp_path, *args, input, link=False, config="/dev/null"):
    if link:
        ln = tmp_path / "bin" / "sendmail"
        ln.parent.mkdir(exist_ok=True)
        if not ln.exists():
            ln.symlink_to(smtpc_bin)
        argv = [str(ln), *args]
    else:
        argv = [smtpc_bin, "sendmail", *args]
    return subprocess.run(argv, cwd=tmp_path, input=input, capture_output=True, timeout=30,
                          env=env_for(tmp_path, config))


def delivered(tmp_path, d="outbox"):
    files = sorted((tmp_path / d).glob("*.eml"))
    assert len(files) == 1, files
    raw = files[0].read_bytes()
    lines = raw.split(b"\r\n")
    sender = lines[0].removeprefix(b"X-Sender: ").decode()
    rcpts = [l.removeprefix(b"X-Receiver: ").decode() for l in lines if l.startswith(b"X-Receiver: ")]
    body = raw.split(b"\r\n", 1 + len(rcpts))[-1]
    return sender, rcpts, body


MSG = (b"From: Me <me@example.org>\n"
       b"To: \"Doe, Jane\" <jane@example.org>, bob@example.org (Bob)\n"
       b"Cc: team: c1@example.org,\n  c2@example.org;\n"
       b"Bcc: hidden@example.org\n"
       b"Subject: hello\n"
       b"\n"
       b"body line\n")


@pytest.mark.parametrize("link", [False, True])
def test_t_reads_recipients_and_strips_bcc(smtpc_bin, tmp_path, link):
    r = sendmail(smtpc_bin, tmp_path, "-t", "-i", input=MSG, link=link)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"" and r.stderr == b""  # silent on success, like sendmail
    sender, rcpts, body = delivered(tmp_path)
    assert sender == "me@example.org"  # from the From: header when nothing else says
    assert rcpts == ["jane@example.org", "bob@example.org", "c1@example.org", "c2@example.org",
                     "hidden@example.org"]
    assert b"hidden@example.org" not in body and b"Bcc" not in body
    msg = email.message_from_bytes(body, policy=email.policy.default)
    assert msg["Subject"] == "hello" and msg["Date"]
    assert msg.get_content() == "body line\r\n" or msg.get_content() == "body line\n"


def test_command_line_recipients_and_f(smtpc_bin, tmp_path):
    r = sendmail(smtpc_bin, tmp_path, "-f", "bounce@example.org", "--", "x@example.org", "y@example.org",
                 input=b"Subject: s\n\nb\n")
    assert r.returncode == 0, r.stderr
    sender, rcpts, body = delivered(tmp_path)
    assert sender == "bounce@example.org"
    assert rcpts == ["x@example.org", "y@example.org"]
    assert body.startswith(b"From: bounce@example.org\r\nDate: ")  # added when missing


def test_t_adds_to_command_line_without_duplicates(smtpc_bin, tmp_path):
    r = sendmail(smtpc_bin, tmp_path, "-t", "-fme@example.org", "BOB@example.org", "extra@example.org", input=MSG)
    assert r.returncode == 0, r.stderr
    _, rcpts, _ = delivered(tmp_path)
    assert rcpts[:2] == ["BOB@example.org", "extra@example.org"]
    assert "bob@example.org" not in rcpts and "jane@example.org" in rcpts


def test_fullname_and_r(smtpc_bin, tmp_path):
    r = sendmail(smtpc_bin, tmp_path, "-r", "me@example.org", "-F", 'Jo "Q" Public', "to@example.org",
                 input=b"Subject: s\n\nb\n")
    assert r.returncode == 0, r.stderr
    _, _, body = delivered(tmp_path)
    msg = email.message_from_bytes(body, policy=email.policy.default)
    assert msg["From"].addresses[0].display_name == 'Jo "Q" Public'
    assert msg["From"].addresses[0].addr_spec == "me@example.org"


def test_dot_ends_input_without_i(smtpc_bin, tmp_path):
    r = sendmail(smtpc_bin, tmp_path, "-f", "a@example.org", "to@example.org",
                 input=b"Subject: s\n\nbefore\n.\nafter\n")
    assert r.returncode == 0
    _, _, body = delivered(tmp_path)
    assert body.endswith(b"before\r\n") and b"after" not in body


@pytest.mark.parametrize("flag", ["-i", "-oi"])
def test_i_keeps_dot_lines(smtpc_bin, tmp_path, flag):
    r = sendmail(smtpc_bin, tmp_path, flag, "-f", "a@example.org", "to@example.org",
                 input=b"Subject: s\n\nbefore\n.\nafter\n")
    assert r.returncode == 0
    _, _, body = delivered(tmp_path)
    assert body.endswith(b"before\r\n.\r\nafter\r\n")


def test_harmless_options_ignored(smtpc_bin, tmp_path):
    r = sendmail(smtpc_bin, tmp_path, "-oem", "-odi", "-B8BITMIME", "-bm", "-oi", "-B", "7BIT",
                 "-O", "DeliveryMode=b", "-h", "5", "-L", "tag", "-G", "-m", "-n", "-v", "-U",
                 "-N", "success,failure", "-R", "hdrs", "-V", "env-id-1",
                 "-f", "a@example.org", "to@example.org", input=b"Subject: s\n\nb\n")
    assert r.returncode == 0, r.stderr
    _, rcpts, _ = delivered(tmp_path)
    assert rcpts == ["to@example.org"]


@pytest.mark.parametrize("args,status", [
    ((), 64),                                  # no recipients and no -t
    (("-bs",), 64),                            # SMTP-on-stdin mode not supported
    (("-q",), 64),
    (("-f",), 64),                             # missing value
    (("--bogus", "x@example.org"), 64),
    (("not-an-address",), 65),
])
def test_errors(smtpc_bin, tmp_path, args, status):
    r = sendmail(smtpc_bin, tmp_path, *args, input=b"Subject: s\n\nb\n")
    assert r.returncode == status, r.stderr
    assert not (tmp_path / "outbox").exists()


def test_t_without_recipients(smtpc_bin, tmp_path):
    r = sendmail(smtpc_bin, tmp_path, "-t", input=b"From: a@example.org\nSubject: s\n\nb\n")
    assert r.returncode == 64
    assert b"no recipients" in r.stderr


def test_account_chosen_by_sender(smtpc_bin, tmp_path):
    conf = tmp_path / "c.conf"
    conf.write_text("default = work\n"
                    "[account work]\nfrom = w@example.org\npickup-dir = pw\n"
                    "[account home]\nfrom = h@home.example\nmatch-from = *@family.example\npickup-dir = ph\n")
    r = sendmail(smtpc_bin, tmp_path, "-f", "kid@family.example", "to@example.org",
                 input=b"Subject: s\n\nb\n", config=str(conf))
    assert r.returncode == 0, r.stderr
    sender, _, _ = delivered(tmp_path, "ph")
    assert sender == "kid@family.example"
    # without -f: the From: header picks the account; the account's from is the sender
    r = sendmail(smtpc_bin, tmp_path, "-t", input=b"From: h@home.example\nTo: t@example.org\n\nb\n",
                 config=str(conf))
    assert r.returncode == 0, r.stderr
    assert len(list((tmp_path / "ph").glob("*.eml"))) == 2
    # no match: the default account and its from
    r = sendmail(smtpc_bin, tmp_path, "to@example.org", input=b"Subject: s\n\nb\n", config=str(conf))
    assert r.returncode == 0, r.stderr
    sender, _, _ = delivered(tmp_path, "pw")
    assert sender == "w@example.org"
    # --account wins
    r = sendmail(smtpc_bin, tmp_path, "--account", "home", "-f", "w@example.org", "to@example.org",
                 input=b"Subject: s\n\nb\n", config=str(conf))
    assert r.returncode == 0
    assert len(list((tmp_path / "ph").glob("*.eml"))) == 3


def test_unknown_option_warns_but_delivers(smtpc_bin, tmp_path):
    r = sendmail(smtpc_bin, tmp_path, "-Z", "-f", "a@example.org", "to@example.org", input=b"Subject: s\n\nb\n")
    assert r.returncode == 0
    assert b"ignoring unknown option -Z" in r.stderr


@pytest.mark.parametrize("arg,want", [("<a@example.org>", "a@example.org"), ("<>", ""), ("", "")])
def test_angle_and_null_sender(smtpc_bin, tmp_path, arg, want):
    r = sendmail(smtpc_bin, tmp_path, "-f", arg, "to@example.org", input=b"From: x@example.org\n\nb\n")
    assert r.returncode == 0, r.stderr
    sender, rcpts, _ = delivered(tmp_path)
    assert sender == want and rcpts == ["to@example.org"]


def test_null_sender_without_from_header(smtpc_bin, tmp_path):
    r = sendmail(smtpc_bin, tmp_path, "-f", "<>", "to@example.org", input=b"Subject: bounce\n\nb\n")
    assert r.returncode == 0, r.stderr
    sender, _, body = delivered(tmp_path)
    assert sender == ""
    assert body.startswith(b"From: ") and b"@" in body.split(b"\r\n")[0]
