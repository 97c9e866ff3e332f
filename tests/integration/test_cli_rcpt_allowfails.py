"""--rcpt-allowfails (issue 14, item 12): by default a refused recipient
fails the whole message (test_cli_smtp.py); with the option the accepted
recipients get it, the exit status is 0 when at least one accepted, and every
refused one is listed in the text and --json output. Also with --count /
--connections and smtpc bulk, and as the configuration key."""
import json
import os
import subprocess

from servers.aiosmtpd_server import aiosmtpd  # noqa: F401

GOOD, BAD = "b@example.org", "bad@example.org"


def env_for(tmp_path, config="/dev/null"):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMTPC_")}
    env["HOME"] = str(tmp_path)
    env["SMTPC_CONFIG"] = config
    return env


def send(smtpc_bin, tmp_path, srv, *args, env=None):
    return subprocess.run([smtpc_bin, "send", "--server", f"127.0.0.1:{srv.port}", "--tls", "none",
                           "--from", "a@example.org", "--text", "x", *args],
                          cwd=tmp_path, capture_output=True, timeout=120, env=env or env_for(tmp_path))


def test_single_send_to_the_accepted_ones(smtpc_bin, tmp_path, aiosmtpd):
    srv = aiosmtpd(refuse={BAD})
    r = send(smtpc_bin, tmp_path, srv, "--to", GOOD, "--to", BAD, "--rcpt-allowfails")
    assert r.returncode == 0, r.stderr
    assert "sent to 1 recipient" in r.stdout.decode() and "(1 refused)" in r.stdout.decode()
    assert f"refused {BAD}: 550 " in r.stderr.decode() and "no such user" in r.stderr.decode()
    assert [e.rcpt_tos for e in srv.envelopes] == [[GOOD]]


def test_single_send_json_lists_the_refused(smtpc_bin, tmp_path, aiosmtpd):
    srv = aiosmtpd(pipelining=True, refuse={BAD})
    r = send(smtpc_bin, tmp_path, srv, "--to", BAD, "--to", GOOD, "--rcpt-allowfails", "--json")
    assert r.returncode == 0, r.stderr
    o = json.loads(r.stdout)
    assert o["ok"] is True and o["error"] is None and o["final"]["code"] == 250
    assert [(x["address"], x["code"], x["accepted"]) for x in o["recipients"]] == [
        (BAD, 550, False), (GOOD, 250, True)]
    assert "no such user" in o["recipients"][0]["text"]
    assert [e.rcpt_tos for e in srv.envelopes] == [[GOOD]]


def test_every_recipient_refused_still_fails(smtpc_bin, tmp_path, aiosmtpd):
    srv = aiosmtpd(refuse={BAD, "bad2@example.org"})
    r = send(smtpc_bin, tmp_path, srv, "--to", BAD, "--to", "bad2@example.org", "--rcpt-allowfails", "--json")
    assert r.returncode == 69, r.stderr
    o = json.loads(r.stdout)
    assert o["ok"] is False and [x["accepted"] for x in o["recipients"]] == [False, False]
    assert srv.envelopes == []


def test_configuration_key(smtpc_bin, tmp_path, aiosmtpd):
    srv = aiosmtpd(refuse={BAD})
    cfg = tmp_path / "smtpc.conf"
    cfg.write_text("rcpt-allowfails = yes\n")
    os.chmod(cfg, 0o600)
    r = send(smtpc_bin, tmp_path, srv, "--to", GOOD, "--to", BAD, env=env_for(tmp_path, str(cfg)))
    assert r.returncode == 0, r.stderr
    assert [e.rcpt_tos for e in srv.envelopes] == [[GOOD]]


def test_count_and_connections(smtpc_bin, tmp_path, aiosmtpd):
    srv = aiosmtpd(pipelining=True, refuse={BAD})
    r = send(smtpc_bin, tmp_path, srv, "--to", GOOD, "--to", BAD, "--count", "3", "--connections", "2",
             "--rcpt-allowfails", "--json")
    assert r.returncode == 0, r.stderr
    objs = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(objs) == 3 and all(o["ok"] for o in objs)
    assert all([(x["address"], x["code"], x["accepted"]) for x in o["recipients"]] ==
               [(GOOD, 250, True), (BAD, 550, False)] for o in objs)
    assert [e.rcpt_tos for e in srv.envelopes] == [[GOOD]] * 3


def test_count_without_the_option_is_a_failure(smtpc_bin, tmp_path, aiosmtpd):
    # the bulk driver cannot take a message back from the accepted ones: the
    # exit status and the report say that a recipient was refused
    srv = aiosmtpd(pipelining=True, refuse={BAD})
    r = send(smtpc_bin, tmp_path, srv, "--to", GOOD, "--to", BAD, "--count", "2")
    assert r.returncode == 69, r.stderr
    err = r.stderr.decode()
    assert "1 of 2 recipients refused; sent to the 1 accepted" in err and "--rcpt-allowfails" in err
    assert f"{BAD}: 550" in err


def test_bulk_dir(smtpc_bin, tmp_path, aiosmtpd):
    srv = aiosmtpd(pipelining=True, refuse={BAD})
    d = tmp_path / "dir"
    d.mkdir()
    (d / "1.eml").write_bytes(f"From: a@example.org\r\nTo: {GOOD}, {BAD}\r\n\r\none\r\n".encode())
    (d / "2.eml").write_bytes(f"From: a@example.org\r\nTo: {BAD}\r\n\r\ntwo\r\n".encode())
    base = [smtpc_bin, "bulk", "--server", f"127.0.0.1:{srv.port}", "--tls", "none", "--dir", str(d)]
    r = subprocess.run(base + ["--rcpt-allowfails"], capture_output=True, timeout=120, env=env_for(tmp_path))
    assert r.returncode == 75, r.stderr  # 2.eml: every recipient refused
    err = r.stderr.decode()
    assert "1 sent, 1 not sent" in err and "1.eml: sent to 1 recipient (1 refused)" in err
    assert f"refused {BAD}: 550" in err
    assert [e.rcpt_tos for e in srv.envelopes] == [[GOOD]]
    (d / "2.eml").unlink()
    r = subprocess.run(base, capture_output=True, timeout=120, env=env_for(tmp_path))
    assert r.returncode == 75 and "0 sent, 1 not sent" in r.stderr.decode(), r.stderr
    assert "1.eml: 1 of 2 recipients refused" in r.stderr.decode()
