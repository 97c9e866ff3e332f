"""Stored copies of a composed message (outbox entry, pickup file) are
written 7-bit clean: RFC 2047 encoded words for a non-ASCII Subject or
display name, a transfer encoding for an 8-bit text, unless an address
needs SMTPUTF8. The later sender (the outbox's flush, or whoever relays a
pickup file) cannot know the extensions of the server it will meet, so a
stored copy with raw UTF-8 headers would go out in a transaction without
SMTPUTF8 (and 8-bit bytes without BODY=8BITMIME)."""
import email
import email.policy
import os
import subprocess

import pytest

from client_servers import kv
from test_cli_queue import clean_env
from conftest import driver
from servers.aiosmtpd_server import aiosmtpd  # noqa: F401

SUBJECT = "Grüße aus Köln"
TEXT = "Schöne Grüße.\n"


def store(mode, d, *extra):
    p = subprocess.run([driver("local8"), "--mode", mode, "--dir", str(d), *extra],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    return p.stdout.split("id=", 1)[1].strip()


def flush(srv, ob):
    p = subprocess.run([driver("outbox"), "--host", "127.0.0.1", "--port", str(srv.port), "--outbox", str(ob),
                        "--backoff-ms", "0"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    st = kv([ln for ln in p.stdout.splitlines() if ln.startswith("outbox ")][0])
    assert st["rc"] == "SMTPC_OK", p.stdout
    return st


def check_decodes(data):
    m = email.message_from_bytes(data, policy=email.policy.default)
    assert m["Subject"] == SUBJECT
    assert m["From"].addresses[0].display_name == "Jürgen Müller"
    assert m["From"].addresses[0].addr_spec == "a@example.org"
    assert m.get_content().replace("\r\n", "\n") == TEXT


@pytest.mark.parametrize("mode", ["add", "outbox"])
def test_outbox_entry_flushed_to_server_without_smtputf8(aiosmtpd, tmp_path, mode):
    ob = tmp_path / "outbox"
    store(mode, ob)
    srv = aiosmtpd(smtputf8=False)
    st = flush(srv, ob)
    assert int(st["sent"]) == 1, st
    assert len(srv.envelopes) == 1
    env = srv.envelopes[0]
    assert env.mail_from == "a@example.org" and env.rcpt_tos == ["b@example.org"]
    assert not any(o.upper() == "SMTPUTF8" for o in env.mail_options), env.mail_options
    # no BODY=8BITMIME was declared, so not a single 8-bit byte may go out
    assert not any(o.upper().startswith("BODY=8BITMIME") for o in env.mail_options)
    assert all(b < 0x80 for b in env.data), env.data[:400]
    head = env.data.split(b"\r\n\r\n", 1)[0].decode("ascii")
    assert "Subject: =?" in head and "Grüße" not in head
    check_decodes(env.data)


def test_pickup_file_is_7bit_clean(tmp_path):
    d = tmp_path / "pickup"
    name = store("pickup", d)
    data = (d / name).read_bytes()
    assert all(b < 0x80 for b in data), data[:400]
    check_decodes(data)


def test_utf8_address_keeps_utf8_stored(tmp_path):
    """An address needs SMTPUTF8: the copy can only go to a server that
    offers it; headers are stored as they are."""
    ob = tmp_path / "outbox"
    store("add", ob, "--utf8-addr")
    q = ob / "queue"
    data = [(q / f).read_bytes() for f in os.listdir(q) if f.endswith(".msg")][0]
    assert "Subject: Grüße aus Köln".encode() in data


@pytest.mark.parametrize("where", ["--outbox", "--pickup-dir"])
def test_cli_stored_copy_is_7bit_clean(smtpc_bin, tmp_path, aiosmtpd, where):
    r = subprocess.run([smtpc_bin, "send", "--from", "Jürgen Müller <a@example.org>", "--to", "b@example.org",
                        "--subject", SUBJECT, "--text", TEXT, where, "d"], cwd=tmp_path, capture_output=True,
                       timeout=60, env=clean_env(tmp_path), text=True)
    assert r.returncode == 0, r.stderr
    if where == "--pickup-dir":
        data = [(tmp_path / "d" / f).read_bytes() for f in os.listdir(tmp_path / "d")][0]
    else:
        srv = aiosmtpd(smtputf8=False)
        assert int(flush(srv, tmp_path / "d")["sent"]) == 1
        env = srv.envelopes[0]
        assert not any(o.upper() in ("SMTPUTF8", "BODY=8BITMIME") for o in env.mail_options), env.mail_options
        data = env.data
    assert all(b < 0x80 for b in data), data[:400]
    check_decodes(data)


def flush_raw(srv, ob):
    p = subprocess.run([driver("outbox"), "--host", "127.0.0.1", "--port", str(srv.port), "--outbox", str(ob),
                        "--backoff-ms", "0"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    return kv([ln for ln in p.stdout.splitlines() if ln.startswith("outbox ")][0])


def test_raw_8bit_entry_flushed_with_8bitmime_and_size(smtpc_bin, tmp_path, aiosmtpd):
    """A raw message queued as it is (send --outbox --message) keeps its
    8-bit body: the flush declares BODY=8BITMIME and SIZE= for it."""
    msg = tmp_path / "m.eml"
    body = "From: a@example.org\r\nTo: b@example.org\r\nSubject: raw\r\n\r\nSch\u00f6ne Gr\u00fc\u00dfe.\r\n".encode()
    msg.write_bytes(body)
    r = subprocess.run([smtpc_bin, "send", "--from", "a@example.org", "--to", "b@example.org", "--message", str(msg),
                        "--outbox", "d"], cwd=tmp_path, capture_output=True, timeout=60, env=clean_env(tmp_path),
                       text=True)
    assert r.returncode == 0, r.stderr
    srv = aiosmtpd()
    st = flush_raw(srv, tmp_path / "d")
    assert int(st["sent"]) == 1, st
    env = srv.envelopes[0]
    opts = [o.upper() for o in env.mail_options]
    assert "BODY=8BITMIME" in opts, env.mail_options
    sizes = [int(o.split("=", 1)[1]) for o in opts if o.startswith("SIZE=")]
    assert sizes and sizes[0] >= len(body), env.mail_options
    assert "Gr\u00fc\u00dfe".encode() in env.data


def test_utf8_address_entry_flushed_with_smtputf8(tmp_path, aiosmtpd):
    """An entry to a UTF-8 address goes out with MAIL ... SMTPUTF8 to a
    server that offers it, and stays queued (with the reason) for one that
    does not."""
    ob = tmp_path / "outbox"
    store("add", ob, "--utf8-addr")
    bad = aiosmtpd(smtputf8=False)
    st = flush_raw(bad, ob)
    assert int(st["sent"]) == 0 and int(st["deferred"]) == 1 and not bad.envelopes, st
    assert "SMTPUTF8" in (ob / "queue").joinpath(
        [f for f in os.listdir(ob / "queue") if f.endswith(".state")][0]).read_text()
    good = aiosmtpd()
    st = flush_raw(good, ob)
    assert int(st["sent"]) == 1, st
    env = good.envelopes[0]
    assert "SMTPUTF8" in [o.upper() for o in env.mail_options], env.mail_options
    assert env.rcpt_tos == ["j\u00f8rn@example.org"]
