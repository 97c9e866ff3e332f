"""smtpc send / sendmail delivering to a real SMTP server (aiosmtpd) through
the session driver: envelope, exact bytes, per-recipient results, JSON,
exit statuses for 4xx/5xx/refused connection/unknown host."""
import json
import os
import socket
import subprocess

import pytest

from servers.aiosmtpd_server import aiosmtpd, free_port  # noqa: F401


def clean_env(tmp_path, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMTPC_")}
    env["HOME"] = str(tmp_path)
    env["SMTPC_CONFIG"] = "/dev/null"
    env.update(extra)
    return env


def run(smtpc_bin, tmp_path, *args, input=None, env=None, argv0=None):
    argv = [argv0 or smtpc_bin, *args]
    return subprocess.run(argv, cwd=tmp_path, input=input, capture_output=True, timeout=120,
                          env=env or clean_env(tmp_path))


def send(smtpc_bin, tmp_path, srv, *args, **kw):
    return run(smtpc_bin, tmp_path, "send", "--server", f"127.0.0.1:{srv.port}", "--tls", "none",
               "--from", "a@example.org", *args, **kw)


def test_issue2_text_mail(smtpc_bin, tmp_path, aiosmtpd):
    srv = aiosmtpd()
    r = send(smtpc_bin, tmp_path, srv, "--to", "b@example.org", "--subject", "hi", "--text", "hello")
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode() == f"sent to 1 recipient via 127.0.0.1:{srv.port}, queued as 1234\n"
    assert len(srv.envelopes) == 1
    e = srv.envelopes[0]
    assert e.mail_from == "a@example.org" and e.rcpt_tos == ["b@example.org"]
    assert b"\r\nSubject: hi\r\n" in e.data and e.data.endswith(b"\r\n\r\nhello\r\n")
    assert not (tmp_path / "outbox").exists()


@pytest.mark.parametrize("pipelining", [False, True])
def test_json_and_recipients(smtpc_bin, tmp_path, aiosmtpd, pipelining):
    srv = aiosmtpd(pipelining=pipelining)
    r = send(smtpc_bin, tmp_path, srv, "--to", "b@example.org", "--cc", "c@example.org",
             "--bcc", "d@example.org", "--text", "x", "--json")
    assert r.returncode == 0, r.stderr
    o = json.loads(r.stdout)
    assert o["ok"] is True and o["delivery"] == "smtp" and o["server"] == f"127.0.0.1:{srv.port}"
    assert o["tls"] is None and o["auth"] is None and o["error"] is None
    assert [(x["address"], x["code"], x["accepted"]) for x in o["recipients"]] == [
        ("b@example.org", 250, True), ("c@example.org", 250, True), ("d@example.org", 250, True)]
    assert o["final"]["code"] == 250
    # aiosmtpd does not advertise ENHANCEDSTATUSCODES: "2.0.0" stays in the text
    assert o["final"]["enhanced"] in (None, "2.0.0") and "queued as 1234" in o["final"]["text"]
    assert o["final"]["queue_id"] == "1234"
    assert srv.envelopes[0].rcpt_tos == ["b@example.org", "c@example.org", "d@example.org"]
    assert b"d@example.org" not in srv.envelopes[0].data  # Bcc stays in the envelope


def test_message_sent_as_is_with_dot_stuffing(smtpc_bin, tmp_path, aiosmtpd):
    srv = aiosmtpd()
    m = b"From: a@example.org\r\nSubject: raw\r\n\r\n.leading dot\r\n.\r\nend\r\n"
    (tmp_path / "m.eml").write_bytes(m)
    r = send(smtpc_bin, tmp_path, srv, "--to", "b@example.org", "--message", "m.eml")
    assert r.returncode == 0, r.stderr
    assert srv.envelopes[0].data == m


def test_refused_recipient_is_all_or_nothing(smtpc_bin, tmp_path, aiosmtpd):
    srv = aiosmtpd(refuse={"bad@example.org"})
    r = send(smtpc_bin, tmp_path, srv, "--to", "b@example.org", "--to", "bad@example.org",
             "--text", "x", "--json")
    assert r.returncode == 69, r.stderr
    o = json.loads(r.stdout)
    assert o["ok"] is False and o["error"]["class"] == "permanent"
    bad = [x for x in o["recipients"] if x["address"] == "bad@example.org"][0]
    assert bad["code"] == 550 and bad["accepted"] is False
    assert "no such user" in bad["text"]
    good = [x for x in o["recipients"] if x["address"] == "b@example.org"][0]
    assert good["code"] == 250 and good["accepted"] is True  # accepted, but not sent: all or nothing
    assert srv.envelopes == []


def test_tempfail_exit_75_and_text_report(smtpc_bin, tmp_path, aiosmtpd):
    srv = aiosmtpd(tempfail={"later@example.org"})
    r = send(smtpc_bin, tmp_path, srv, "--to", "later@example.org", "--text", "x")
    assert r.returncode == 75, r.stderr
    assert b"later@example.org: 450 4.2.1 <later@example.org>: try later" in r.stderr
    assert srv.envelopes == []


def test_data_rejected_exit_69(smtpc_bin, tmp_path, aiosmtpd):
    srv = aiosmtpd(data_reply="554 5.7.1 spam\x1b[2J detected")
    r = send(smtpc_bin, tmp_path, srv, "--to", "b@example.org", "--text", "x")
    assert r.returncode == 69
    assert b"\x1b" not in r.stderr  # server text is escaped


def test_connection_refused_exit_75(smtpc_bin, tmp_path):
    port = free_port()
    r = run(smtpc_bin, tmp_path, "send", "--server", f"127.0.0.1:{port}", "--tls", "none",
            "--from", "a@example.org", "--to", "b@example.org", "--text", "x", "--json")
    assert r.returncode == 75
    o = json.loads(r.stdout)
    assert o["error"]["class"] == "transient" and o["ok"] is False


def test_unknown_host_exit_68(smtpc_bin, tmp_path):
    r = run(smtpc_bin, tmp_path, "send", "--server", "no-such-host.invalid:25", "--tls", "none",
            "--from", "a@example.org", "--to", "b@example.org", "--text", "x")
    assert r.returncode == 68, r.stderr


def test_ipv6_server_syntax(smtpc_bin, tmp_path, aiosmtpd):
    try:
        socket.socket(socket.AF_INET6).bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback")
    srv = aiosmtpd(host="::1")
    r = run(smtpc_bin, tmp_path, "send", "--server", f"[::1]:{srv.port}", "--tls", "none",
            "--from", "a@example.org", "--to", "b@example.org", "--text", "x")
    assert r.returncode == 0, r.stderr
    assert f"via [::1]:{srv.port}" in r.stdout.decode()


def test_ehlo_name_and_count(smtpc_bin, tmp_path, aiosmtpd):
    srv = aiosmtpd()
    r = send(smtpc_bin, tmp_path, srv, "--to", "b@example.org", "--text", "x", "--ehlo-name",
             "client.example", "--count", "2", "--timeout", "60s", "--connect-timeout", "30s")
    assert r.returncode == 0, r.stderr
    assert len(srv.envelopes) == 2 and "client.example" in srv.ehlo_names


def test_no_silent_plaintext_and_user_needs_password(smtpc_bin, tmp_path, aiosmtpd):
    srv = aiosmtpd()
    # no --tls on a port other than 25/465: STARTTLS required, aiosmtpd has none
    r = run(smtpc_bin, tmp_path, "send", "--server", f"127.0.0.1:{srv.port}", "--from", "a@example.org",
            "--to", "b@example.org", "--text", "x")
    assert r.returncode == 76 and b"does not offer STARTTLS" in r.stderr  # no silent plaintext
    r = send(smtpc_bin, tmp_path, srv, "--to", "b@example.org", "--text", "x", "--user", "u")
    assert r.returncode == 78 and b"--user u needs a password" in r.stderr
    assert srv.envelopes == []


def test_server_from_config_and_env(smtpc_bin, tmp_path, aiosmtpd):
    srv = aiosmtpd()
    conf = tmp_path / "c.conf"
    conf.write_text(f"[account lab]\nserver = 127.0.0.1\nport = {srv.port}\ntls = none\nfrom = cfg@example.org\n")
    r = run(smtpc_bin, tmp_path, "send", "--config", str(conf), "--to", "b@example.org", "--text", "x")
    assert r.returncode == 0, r.stderr
    assert srv.envelopes[0].mail_from == "cfg@example.org"
    # SMTPC_SERVER overrides the file
    srv2 = aiosmtpd()
    env = clean_env(tmp_path, SMTPC_SERVER=f"127.0.0.1:{srv2.port}")
    r = run(smtpc_bin, tmp_path, "send", "--config", str(conf), "--to", "b@example.org", "--text", "x", env=env)
    assert r.returncode == 0, r.stderr
    assert len(srv2.envelopes) == 1 and len(srv.envelopes) == 1


def test_sendmail_to_server(smtpc_bin, tmp_path, aiosmtpd):
    srv = aiosmtpd()
    conf = tmp_path / "c.conf"
    conf.write_text(f"server = 127.0.0.1:{srv.port}\ntls = none\n")
    link = tmp_path / "sendmail"
    link.symlink_to(smtpc_bin)
    env = clean_env(tmp_path, SMTPC_CONFIG=str(conf))
    msg = b"From: a@example.org\nTo: b@example.org\nBcc: c@example.org\nSubject: s\n\nbody\n"
    r = run(smtpc_bin, tmp_path, "-t", "-oi", "-odi", "-f", "bounce@example.org", input=msg, env=env,
            argv0=str(link))
    assert r.returncode == 0, r.stderr
    assert r.stdout == b""
    e = srv.envelopes[0]
    assert e.mail_from == "bounce@example.org"
    assert e.rcpt_tos == ["b@example.org", "c@example.org"]
    assert b"Bcc" not in e.data and e.data.endswith(b"\r\n\r\nbody\r\n")
    assert e.data.startswith(b"Date: ") and b"From: a@example.org\r\n" in e.data


def test_probe_text_and_json(smtpc_bin, tmp_path, aiosmtpd):
    srv = aiosmtpd(pipelining=True)
    r = run(smtpc_bin, tmp_path, "probe", "--server", f"127.0.0.1:{srv.port}", "--tls", "none")
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert out.startswith("greeting: 220 ") and "\nehlo: 250 " in out and "\n  PIPELINING\n" in out
    r = run(smtpc_bin, tmp_path, "probe", f"127.0.0.1:{srv.port}", "--tls", "none", "--json")
    assert r.returncode == 0, r.stderr
    o = json.loads(r.stdout)
    assert o["ok"] is True and o["greeting"]["code"] == 220 and o["ehlo"]["code"] == 250
    assert "PIPELINING" in o["extensions"] and any(x.startswith("SIZE ") for x in o["extensions"])
    assert srv.envelopes == []


def test_probe_errors(smtpc_bin, tmp_path):
    port = free_port()
    r = run(smtpc_bin, tmp_path, "probe", "--server", f"127.0.0.1:{port}", "--tls", "none", "--json")
    assert r.returncode == 75
    o = json.loads(r.stdout)
    assert o["ok"] is False and o["greeting"] is None and o["error"]["class"] == "transient"
    assert run(smtpc_bin, tmp_path, "probe").returncode == 64
    assert run(smtpc_bin, tmp_path, "probe", "a", "b").returncode == 64
    assert run(smtpc_bin, tmp_path, "probe", "127.0.0.1:1").returncode == 75  # refused


def test_composed_mime_message_to_server(smtpc_bin, tmp_path, aiosmtpd):
    import email
    import email.policy
    srv = aiosmtpd()
    blob = os.urandom(100_000)
    (tmp_path / "blob.bin").write_bytes(blob)
    r = send(smtpc_bin, tmp_path, srv, "--to", "Bob <b@example.org>", "--subject", "Grüße",
             "--text", "Grüße aus Köln", "--html", "<p>Grüße</p>", "--attach", "blob.bin")
    assert r.returncode == 0, r.stderr
    e = srv.envelopes[0]
    assert e.rcpt_tos == ["b@example.org"]
    opts = " ".join(e.mail_options).upper()
    assert "BODY=8BITMIME" in opts  # aiosmtpd offers 8BITMIME and the text is 8-bit
    assert f"SIZE={len(e.data)}" in opts.split(), (opts, len(e.data))
    msg = email.message_from_bytes(e.data, policy=email.policy.default)
    assert msg["Subject"] == "Grüße"
    assert msg.get_body(("plain",)).get_content().strip() == "Grüße aus Köln"
    atts = list(msg.iter_attachments())
    assert atts[0].get_filename() == "blob.bin" and atts[0].get_content() == blob


def test_password_cmd_tempfail_is_a_temporary_failure(smtpc_bin, tmp_path, aiosmtpd):
    # a password command that exits 75 (EX_TEMPFAIL): smtpc exits 75 too
    # (cron tries again later); another failing command is a configuration error
    srv = aiosmtpd()
    r = send(smtpc_bin, tmp_path, srv, "--to", "b@example.org", "--text", "x", "--user", "me",
             "--password-cmd", "exit 75", "--allow-plaintext-auth")
    assert r.returncode == 75 and b"try again later" in r.stderr, r.stderr
    r = send(smtpc_bin, tmp_path, srv, "--to", "b@example.org", "--text", "x", "--user", "me",
             "--password-cmd", "exit 1", "--allow-plaintext-auth")
    assert r.returncode == 78, r.stderr
    assert srv.envelopes == []
