"""sendmail mode: 'smtpc sendmail' and a link named sendmail; -t, -f, -F, -i,
dot termination, Bcc removal, ignored options, account choice by sender;
large messages in bounded memory (spooled to $TMPDIR beyond 1 MiB)."""
import email
import email.policy
import hashlib
import os
import re
import resource
import signal
import subprocess
import time

import pytest

from conftest import driver, sanitized
from servers.aiosmtpd_server import aiosmtpd  # noqa: F401


def env_for(tmp_path, config="/dev/null"):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMTPC_")}
    env["HOME"] = str(tmp_path)
    env["SMTPC_CONFIG"] = config
    env["TMPDIR"] = str(tmp_path / "tmp")  # where a large message is spooled
    (tmp_path / "tmp").mkdir(exist_ok=True)
    return env


def sendmail(smtpc_bin, tmp_path, *args, input, link=False, config="/dev/null", env=None):
    if link:
        ln = tmp_path / "bin" / "sendmail"
        ln.parent.mkdir(exist_ok=True)
        if not ln.exists():
            ln.symlink_to(smtpc_bin)
        argv = [str(ln), *args]
    else:
        argv = [smtpc_bin, "sendmail", *args]
    e = env_for(tmp_path, config)
    e.update(env or {})
    return subprocess.run(argv, cwd=tmp_path, input=input, capture_output=True, timeout=30, env=e)


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


# ---- large messages: bounded memory -----------------------------------------

MIB = 1 << 20


def body(n, line=b"line of the body, with some words in it\n"):
    """n bytes of lines (the last one cut to fit)."""
    return (line * (n // len(line) + 1))[:n]


HDRS = (b"From: Me <me@example.org>\nTo: jane@example.org\nBcc: hidden@example.org,\n  h2@example.org\n"
        b"Subject: s\nDate: Tue, 1 Dec 2026 10:00:00 +0000\n\n")

# The pickup file (envelope lines, then the message; Date: value blanked) of
# each input as the version that held the whole input in memory wrote it
# (commit b0f829a): length and SHA-256. Inputs beyond 1 MiB are now spooled.
SAME_AS_BEFORE = {
    # name: (args, input, (length, sha256 before)); spooled: the names starting with "big-" but the last
    # (cut at a dot line to exactly 1 MiB, the most held in memory)
    "small": (["-t", "-i"], HDRS.replace(b"\n", b"\r\n") + b"body\r\n",
              (194, "e3fe5a49a67afa628f4088c867176d9d3672acbdf42d8cb33d5bfb8a20a304b8")),
    "lf-only": (["-t"], HDRS + b"body\nmore\n",
                (200, "62a6113bdb4a23e9a8467edd7c19635e5fa807708c718a9b8f5e0a39494a95cf")),
    "no-from-date": (["-f", "a@example.org", "to@example.org"], b"Subject: s\nBcc: x@example.org\n\nbody\n",
                     (103, "bc582a6b46c2cb0ce9e3641e68d75663af03acb378e5e56acf4dfec14b5efa09")),
    "lone-dot": (["to@example.org"], HDRS + b"before\n.\nafter\n",
                 (134, "01ba4c8e8be6827d01a60505e0b7c9d64492319f3a537c063536f57a216c9b29")),
    "lone-dot-cr-at-eof": (["to@example.org"], HDRS + b"before\r\n.\r",
                           (134, "01ba4c8e8be6827d01a60505e0b7c9d64492319f3a537c063536f57a216c9b29")),
    "i": (["-i", "to@example.org"], HDRS + b"before\n.\nafter\n..x\n",
          (149, "68c2244a0416e39741759bc43601d531d502064974d4bc3b9f727c4576b19a3d")),
    "big-lf": (["-t"], HDRS + body(3 * MIB) + b"end",
               (3224562, "b4f6cfa99ef7f69ab9da596718b92efcb476be763a96a952e95d6100546a74d9")),
    "big-no-from-date": (["-F", "J\xe9 Q", "-f", "a@example.org", "to@example.org"],
                         b"Subject: s\nBcc: x@example.org\n\n" + body(2 * MIB, b"\xc3\xa9t\xc3\xa9 line\r\n"),
                         (2097259, "f60c8f6c1b7b5d1db5958f81bda8b7ffc14c006d110fbdf86daf3e5af3b32a3f")),
    "big-dot-beyond": (["to@example.org"], HDRS + body(2 * MIB) + b"\n.\n" + body(MIB),
                       (2149708, "16365c9c353f53f949adc7ddf68c56fc27bed2e4f0951ca86053dda2f107fe63")),
    "big-dot-at-threshold": (["to@example.org"], HDRS + body(MIB - len(HDRS) - 1) + b"\n.\r\nafter\n",
                             (1074775, "82afffcfe91f9717652f30e3efe498606e0b1f50cc12cb919522ba1eca2b20d2")),
    "big-i": (["-i", "-t"], HDRS + body(2 * MIB) + b"\n.\n" + body(MIB),
              (3224563, "74cca63d654653721c58721c7cd89d103cbb8f1a2a9a178704dfcc0b94d7a69e")),
}


@pytest.mark.parametrize("name", SAME_AS_BEFORE)
def test_same_bytes_as_before(smtpc_bin, tmp_path, name):
    args, data, (length, digest) = SAME_AS_BEFORE[name]
    r = sendmail(smtpc_bin, tmp_path, "--pickup-dir", "p", *args, input=data)
    assert r.returncode == 0, r.stderr
    raw = next((tmp_path / "p").glob("*.eml")).read_bytes()
    raw = re.sub(rb"Date: [^\r\n]*", b"Date: X", raw, count=1)
    # the header block is now written by the library's loader, which adds a
    # Message-ID when there is none (as sendmail does); otherwise the same bytes
    mid = re.search(rb"^Message-ID: <[0-9A-Fa-f]{24}\.\d+@[a-z.]+>\r\n", raw, re.M)
    assert mid, raw[:400]
    raw = raw[:mid.start()] + raw[mid.end():]
    assert (len(raw), hashlib.sha256(raw).hexdigest()) == (length, digest)
    assert not os.listdir(tmp_path / "tmp")  # the spool file was never seen
    # a small message never touches the disk; a large one needs the spool
    # (the cut at a dot line counts: the message stays small)
    r = sendmail(smtpc_bin, tmp_path, "--pickup-dir", "q", *args, input=data,
                 env={"TMPDIR": str(tmp_path / "nowhere")})
    big = name.startswith("big-") and name != "big-dot-at-threshold"
    assert r.returncode == (75 if big else 0), r.stderr
    assert (tmp_path / "q").exists() != big


def run_rss(smtpc_bin, tmp_path, *args, input, env=None, preexec_fn=None):
    """smtpc sendmail under drv_rss: (exit status, stderr, peak RSS in KiB).
    (Run by pytest directly, its ru_maxrss would include pytest's own.)"""
    rep = tmp_path / "rss.txt"
    e = env_for(tmp_path)
    e.update(env or {})
    r = subprocess.run([driver("rss"), str(rep), smtpc_bin, "sendmail", *args], cwd=tmp_path, input=input,
                       capture_output=True, timeout=300, env=e, preexec_fn=preexec_fn)
    kib, status = (int(x) for x in rep.read_text().split())
    assert status == r.returncode
    return r.returncode, r.stderr, kib


def test_big_message_to_server_in_bounded_memory(smtpc_bin, tmp_path, aiosmtpd):
    # 40 MiB on a pipe, LF line ends, a Bcc, no Date: the server gets it with
    # CRLF, without Bcc, with Date; smtpc's peak memory does not grow with it
    size = 40 * MIB
    srv = aiosmtpd(data_size_limit=64 * MIB)
    head = b"From: a@example.org\nTo: b@example.org\nBcc: c@example.org\nSubject: big\n\n"
    line = b".dot-leading " + b"x" * 900 + b"\n"
    big = head + body(size - len(head) - 1, line) + b"\n"
    to_srv = {"SMTPC_SERVER": f"127.0.0.1:{srv.port}", "SMTPC_TLS": "none"}
    rc, err, small_kib = run_rss(smtpc_bin, tmp_path, "-t", "-i", input=head + b"hi\n", env=to_srv)
    assert rc == 0, err
    rc, err, big_kib = run_rss(smtpc_bin, tmp_path, "-t", "-i", input=big, env=to_srv)
    assert rc == 0, err
    e = srv.envelopes[1]
    assert e.rcpt_tos == ["b@example.org", "c@example.org"]
    want = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: big\r\n\r\n"
    want += big[len(head):].replace(b"\n", b"\r\n")
    date = re.match(rb"Date: [^\r\n]*\r\nMessage-ID: <[^>\r\n]+>\r\n", e.data)
    assert date, e.data[:200]
    got = e.data[date.end():]
    assert len(got) == len(want) and hashlib.sha256(got).digest() == hashlib.sha256(want).digest()
    assert not any(o.upper().startswith("BODY=") for o in e.mail_options), e.mail_options
    assert not os.listdir(tmp_path / "tmp")
    # held whole, it would cost twice its size
    assert big_kib - small_kib < 8 * 1024, (small_kib, big_kib)
    if not sanitized():
        assert big_kib < 16 * 1024, big_kib


@pytest.mark.parametrize("where", ["body-end", "added-from", "none"])
def test_big_message_8bit_declared(smtpc_bin, tmp_path, aiosmtpd, where):
    # BODY=8BITMIME: decided on the added fields, the header block and the spooled body
    srv = aiosmtpd()
    data = b"Subject: s\n\n" + body(3 * MIB) + (b"caf\xc3\xa9\n" if where == "body-end" else b"")
    fullname = "Jos\xe9" if where == "added-from" else "Jose"
    r = sendmail(smtpc_bin, tmp_path, "-F", fullname, "-f", "a@example.org",
                 "b@example.org", input=data, env={"SMTPC_SERVER": f"127.0.0.1:{srv.port}", "SMTPC_TLS": "none"})
    assert r.returncode == 0, r.stderr
    opts = [o.upper() for o in srv.envelopes[0].mail_options]
    assert ("BODY=8BITMIME" in opts) == (where != "none"), opts


def test_spool_cannot_be_created(smtpc_bin, tmp_path):
    r = sendmail(smtpc_bin, tmp_path, "--pickup-dir", "p", "to@example.org",
                 input=HDRS + body(2 * MIB), env={"TMPDIR": str(tmp_path / "nowhere")})
    assert r.returncode == 75, r.stderr  # EX_TEMPFAIL: try again later
    assert b"cannot create a spool file" in r.stderr and b"nowhere" in r.stderr
    assert not (tmp_path / "p").exists()


def test_spool_cannot_be_written(smtpc_bin, tmp_path):
    # the disk is full, as far as smtpc can tell: files may not grow past 1.5 MiB

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (3 * MIB // 2, 3 * MIB // 2))

    rc, err, _ = run_rss(smtpc_bin, tmp_path, "--pickup-dir", "p", "to@example.org",
                         input=HDRS + body(4 * MIB), preexec_fn=limit)
    assert rc == 75, err
    assert b"cannot write the message to a spool file" in err
    assert not (tmp_path / "p").exists()
    assert not os.listdir(tmp_path / "tmp")


def test_header_block_too_large(smtpc_bin, tmp_path):
    r = sendmail(smtpc_bin, tmp_path, "--pickup-dir", "p", "to@example.org",
                 input=b"Subject: s\n" + b"X-Long: header field\n" * (MIB // 16))
    assert r.returncode == 65, r.stderr
    assert b"header block is larger than" in r.stderr
    assert not (tmp_path / "p").exists()
    assert not os.listdir(tmp_path / "tmp")


def test_over_the_limit_refused(smtpc_bin, tmp_path):
    # beyond 512 MiB: refused (EX_DATAERR), nothing sent, nothing left, little memory
    rep = tmp_path / "rss.txt"
    p = subprocess.Popen([driver("rss"), str(rep), smtpc_bin, "sendmail", "--pickup-dir", "p", "to@example.org"],
                         cwd=tmp_path, env=env_for(tmp_path), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    block = body(MIB)
    try:
        p.stdin.write(b"Subject: s\n\n")
        for _ in range(513):
            p.stdin.write(block)
        p.stdin.close()
    except BrokenPipeError:
        pass
    _, err = p.communicate(timeout=300)
    assert p.returncode == 65, err
    assert b"larger than 512 MiB" in err
    assert not (tmp_path / "p").exists()
    assert not os.listdir(tmp_path / "tmp")
    kib = int(rep.read_text().split()[0])
    if not sanitized():
        assert kib < 16 * 1024, kib


@pytest.mark.parametrize("size", [100, 3 * MIB])
@pytest.mark.parametrize("split", [(b".", b"\nafter\n"), (b".", b"\r\nafter\n"), (b".\r", b"\nafter\n"),
                                   (b".", b""), (b".\r", b""), (b".", b"x\nafter\n")])
def test_dot_line_split_across_reads(smtpc_bin, tmp_path, size, split):
    # the dot line's bytes come in two reads (the second may be the end of input)
    first, second = split
    p = subprocess.Popen([smtpc_bin, "sendmail", "--pickup-dir", "p", "to@example.org"], cwd=tmp_path,
                         env=env_for(tmp_path), stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    before = HDRS + body(size - 1) + b"\n"
    p.stdin.write(before + first)
    p.stdin.flush()
    time.sleep(0.2)  # smtpc reads what is there
    p.stdin.write(second)
    p.stdin.close()
    assert p.wait(timeout=60) == 0, p.stderr.read()
    raw = next((tmp_path / "p").glob("*.eml")).read_bytes()
    if second.startswith(b"x"):  # ".x" is no dot line
        assert raw.endswith(b"\r\n.x\r\nafter\r\n")
    else:
        assert raw.endswith(before[-20:].replace(b"\n", b"\r\n")) and b"after" not in raw[-100:]
