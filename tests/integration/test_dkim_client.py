"""DKIM signing wired into the client (smtpc_client_set_dkim): every way
the client sends — a composed message, a memory body, a callback body
(spooled), a batch, and an outbox flushed through the client — gives
signatures that dkimpy and Mail::DKIM accept on the wire form recorded by
aiosmtpd, and on the message Postfix delivered. Both algorithms at once
(two signatures), both canonicalizations."""
import subprocess

import pytest

from conftest import driver, sanitized
from servers.aiosmtpd_server import aiosmtpd  # noqa: F401
from servers.postfix import postfix, postfix_server  # noqa: F401
from test_dkim import DOMAIN, MESSAGES, dkimpy_results, keys, perl_results, wire  # noqa: F401

MODES = ["compose", "async", "mem", "cb", "batch", "outbox"]


def run(mode, port, keys, tmp_path, canon="relaxed/relaxed", msg=MESSAGES["plain"], extra=(), host="127.0.0.1",
        timeout=120, wrap=()):
    src = tmp_path / "in.eml"
    src.write_bytes(msg)
    args = [*wrap, driver("dkim_client"), mode, host, str(port), "--domain", DOMAIN, "--canon", canon,
            "--key", f"rsa={keys['rsa']['path']}", "--key", f"ed={keys['ed']['path']}", *extra, str(src)]
    p = subprocess.run(args, capture_output=True, timeout=timeout)
    assert p.returncode == 0, p.stderr.decode()
    return p


def assert_verifies(tmp_path, data, keys, name="m"):
    assert data.startswith(b"DKIM-Signature: v=1; a=rsa-sha256;"), data[:200]
    assert dkimpy_results(data, keys) == [True, True]
    f = tmp_path / f"{name}.eml"
    f.write_bytes(data)
    r = perl_results([f], keys)[str(f)]
    assert r[0].startswith("pass rsa-sha256"), r


@pytest.mark.parametrize("canon", ["relaxed/relaxed", "simple/simple"])
@pytest.mark.parametrize("mode", MODES)
def test_client_signs_every_way(tmp_path, keys, aiosmtpd, mode, canon):
    srv = aiosmtpd(pipelining=True)
    run(mode, srv.port, keys, tmp_path, canon)
    n = 3 if mode == "batch" else 1
    assert len(srv.envelopes) == n
    for i, env in enumerate(srv.envelopes):
        assert_verifies(tmp_path, env.data, keys, f"m{i}")
        if mode not in ("compose", "async") and not (mode == "batch" and i == 2):
            # the raw body, as sent, after the two fields
            assert env.data.endswith(wire(MESSAGES["plain"]))
    if mode == "outbox":
        # the queued copy stays unsigned: it is signed when flushed
        queued = list((tmp_path / "in.eml.d").rglob("*"))
        assert not any(b"DKIM-Signature" in q.read_bytes() for q in queued if q.is_file())


@pytest.mark.parametrize("name", ["8bit", "no_final_crlf", "trailing_ws", "lf_only",
                                  "empty_body"])
def test_client_raw_bodies_sign_as_sent(tmp_path, keys, aiosmtpd, name):
    """Bodies with bare LFs, no final CRLF, trailing whitespace, 8-bit text:
    signed as the engine sends them (CRLF-normalised)."""
    srv = aiosmtpd(pipelining=True)
    run("cb", srv.port, keys, tmp_path, msg=MESSAGES[name])
    [env] = srv.envelopes
    assert_verifies(tmp_path, env.data, keys)


@pytest.mark.parametrize("name", ["plain", "8bit", "no_final_crlf"])
def test_client_callback_with_rewind_read_twice(tmp_path, keys, aiosmtpd, name):
    """A callback body with smtpc_send_params.rewind (the CLI's --message
    file and sendmail spool): hashed on a first read, rewound once, sent
    on the second — no temporary copy — and the signature verifies."""
    srv = aiosmtpd(pipelining=True)
    p = run("cbrewind", srv.port, keys, tmp_path, msg=MESSAGES[name])
    assert p.stdout.decode().split() == ["rewinds", "1"]
    [env] = srv.envelopes
    assert_verifies(tmp_path, env.data, keys)


def pickup_message(path):
    """A pickup file's envelope block (X-Sender, X-Receiver lines) and the
    message after it, as a relay of the directory takes them."""
    data = path.read_bytes()
    lines = data.split(b"\r\n")
    n = 0
    while n < len(lines) and lines[n].lower().startswith((b"x-sender:", b"x-receiver:")):
        n += 1
    return lines[:n], b"\r\n".join(lines[n:])


@pytest.mark.parametrize("mode", ["compose", "mem", "cb", "cbrewind"])
def test_client_pickup_signed(tmp_path, keys, mode):
    """SMTPC_DELIVERY_PICKUP with a signer: whoever relays the file will
    not sign it, so the .eml carries the signatures (the same signed reader
    as a network send); the message after the envelope block verifies."""
    d = tmp_path / "pickup"
    p = run(mode, 0, keys, tmp_path, extra=("--pickup", str(d)))
    path = [ln.split(" ", 1)[1] for ln in p.stdout.decode().splitlines() if ln.startswith("path ")]
    assert [f.name for f in d.glob("*.eml")] == [path[0].rsplit("/", 1)[1]]
    envelope, msg = pickup_message(d / path[0].rsplit("/", 1)[1])
    assert envelope == [b"X-Sender: alice@example.org", b"X-Receiver: bob@example.com"], envelope
    assert_verifies(tmp_path, msg, keys)
    if mode != "compose":
        assert msg.endswith(wire(MESSAGES["plain"]))
    if mode == "cbrewind":
        assert "rewinds 1" in p.stdout.decode()


def test_client_pickup_unsigned_without_signer(tmp_path, keys):
    d = tmp_path / "pickup"
    run("mem", 0, keys, tmp_path, extra=("--pickup", str(d), "--no-dkim"))
    [f] = d.glob("*.eml")
    _, msg = pickup_message(f)
    assert b"DKIM-Signature" not in msg
    assert msg == wire(MESSAGES["plain"])


def test_client_signature_survives_postfix(tmp_path, keys, postfix):
    """Through a real MTA: the message Postfix stored (with its own
    Return-Path, Delivered-To and Received prepended) still verifies."""
    run("compose", postfix.port, keys, tmp_path, host=postfix.host)
    run("mem", postfix.port, keys, tmp_path, host=postfix.host)
    run("bulk", postfix.port, keys, tmp_path, host=postfix.host, extra=("--count", "3", "--connections", "2"))
    got = postfix.wait_for(5, timeout=60)
    assert len(got) == 5
    for i, m in enumerate(got):
        stored = m.raw.replace(b"\n", b"\r\n")
        assert stored.startswith(b"Return-Path:")
        assert dkimpy_results(stored, keys) == [True, True]
        f = tmp_path / f"stored{i}.eml"
        f.write_bytes(stored)
        assert perl_results([f], keys)[str(f)][0].startswith("pass rsa-sha256")


def test_client_big_attachment_constant_memory(tmp_path, keys, aiosmtpd):
    """A 100 MiB attachment: hashed in a first writer pass and sent in a
    second, with a bounded resident size; both verifiers agree."""
    att = tmp_path / "big.bin"
    with open(att, "wb") as f:
        block = bytes(range(256)) * 4096
        for _ in range((100 << 20) // len(block)):
            f.write(block)
    srv = aiosmtpd(pipelining=True, data_size_limit=200 << 20)
    # drv_rss: a child forked from this (big) process would count its pages
    out = tmp_path / "rss.txt"
    run("compose", srv.port, keys, tmp_path, extra=("--attach", str(att)), timeout=600,
        wrap=(driver("rss"), str(out)))
    rss = int(out.read_text().split()[0])
    if not sanitized():
        assert rss < 16 * 1024, f"{rss} KiB resident"
    [env] = srv.envelopes
    assert len(env.data) > 130 << 20
    assert dkimpy_results(env.data, keys) == [True, True]


def test_client_refuses_a_signer_without_key(tmp_path, keys, aiosmtpd):
    srv = aiosmtpd()
    src = tmp_path / "in.eml"
    src.write_bytes(MESSAGES["plain"])
    p = subprocess.run([driver("dkim_client"), "mem", "127.0.0.1", str(srv.port), "--domain", DOMAIN, str(src)],
                       capture_output=True, timeout=60)
    assert p.returncode == 1
    assert b"set_dkim: SMTPC_ESTATE" in p.stderr
    assert srv.envelopes == []


@pytest.mark.parametrize("loop", ["built-in", "own"])
@pytest.mark.parametrize("pull", [False, True])
@pytest.mark.parametrize("threads", ["1", "3"])
def test_bulk_signs_on_its_pool(tmp_path, keys, aiosmtpd, pull, threads, loop):
    """smtpc_bulk_set_dkim: every message of a run over several connections
    is signed on the pool and verifies; the result callback sees each
    message as the source gave it (the driver aborts otherwise); with the
    application's own loop, the pool's fd comes through its callbacks."""
    srv = aiosmtpd(pipelining=True)
    extra = ["--count", "25", "--connections", "3", "--threads", threads] + (["--pull"] if pull else []) + (
        ["--own-loop"] if loop == "own" else [])
    p = run("bulk", srv.port, keys, tmp_path, msg=MESSAGES["trailing_ws"], extra=extra)
    assert p.stdout.decode().strip() == "sent 25 failed 0"
    if loop == "own":
        # the pool's fd is drained when it wakes the loop: a handful of
        # wake-ups per message, not a busy loop (thousands)
        wakeups = int(p.stderr.decode().split("wakeups ")[1])
        assert wakeups < 40 * 25, wakeups
    assert len(srv.envelopes) == 25
    for i, env in enumerate(srv.envelopes):
        assert env.data.endswith(wire(MESSAGES["trailing_ws"]))
        assert dkimpy_results(env.data, keys) == [True, True], i
    f = tmp_path / "b.eml"
    f.write_bytes(srv.envelopes[-1].data)
    assert perl_results([f], keys)[str(f)][0].startswith("pass rsa-sha256")


@pytest.mark.parametrize("loop", ["epoll", "poll"])
def test_bulk_builtin_loop_sleeps_while_signing(tmp_path, keys, aiosmtpd, loop):
    """The built-in loop waits on the pool's fd while signatures are
    pending: with a slow signer (RSA-4096 on one thread) as the
    bottleneck, the loop's thread uses little CPU next to the signing
    thread's (a loop that spun, or polled the pool, would use as much)."""
    srv = aiosmtpd(pipelining=True)
    src = tmp_path / "in.eml"
    src.write_bytes(MESSAGES["plain"])
    p = subprocess.run([driver("dkim_client"), "bulk", "127.0.0.1", str(srv.port), "--domain", DOMAIN,
                        "--key", f"rsa4={keys['rsa4']['path']}", "--count", "40", "--connections", "3",
                        "--threads", "1", "--loop", loop, "--cpu", str(src)], capture_output=True, timeout=300)
    assert p.returncode == 0, p.stderr.decode()
    assert p.stdout.decode().strip() == "sent 40 failed 0"
    cpu = p.stderr.decode().split("cpu loop ")[1].split()
    loop_us, other_us = int(cpu[0]), int(cpu[2])
    assert other_us > 0
    assert loop_us < other_us / 4, (loop_us, other_us)
    assert len(srv.envelopes) == 40
    assert dkimpy_results(srv.envelopes[-1].data, keys) == [True]


def test_bulk_reports_a_message_that_cannot_be_signed(tmp_path, keys, aiosmtpd):
    """A message with no From cannot be signed: FAILED with the reason,
    nothing of it sent."""
    srv = aiosmtpd(pipelining=True)
    src = tmp_path / "in.eml"
    src.write_bytes(b"Subject: no from\r\n\r\nx\r\n")
    p = subprocess.run([driver("dkim_client"), "bulk", "127.0.0.1", str(srv.port), "--domain", DOMAIN,
                        "--key", f"ed={keys['ed']['path']}", "--count", "3", str(src)],
                       capture_output=True, timeout=120)
    assert p.returncode == 1
    assert p.stdout.decode().strip() == "sent 0 failed 3"
    assert b"From" in p.stderr, p.stderr
    assert srv.envelopes == []


def test_bulk_gives_up_reporting_every_message_once(tmp_path, keys):
    """No server: the messages being signed and the rest of the source are
    reported FAILED with the connection error, each once (as unsigned)."""
    src = tmp_path / "in.eml"
    src.write_bytes(MESSAGES["plain"])
    from servers.aiosmtpd_server import free_port
    p = subprocess.run([driver("dkim_client"), "bulk", "127.0.0.1", str(free_port()), "--domain", DOMAIN,
                        "--key", f"rsa={keys['rsa']['path']}", "--count", "40", "--connections", "2", str(src)],
                       capture_output=True, timeout=120)
    assert p.stdout.decode().strip() == "sent 0 failed 40"
    lines = p.stderr.decode().splitlines()
    assert len(lines) == 40 and all("cannot connect" in x for x in lines), lines[:3]


def test_bulk_cancel_reports_what_it_took(tmp_path, keys, aiosmtpd):
    """Canceled mid-run: every message the pool took from the source is
    reported exactly once (sent, or canceled), before the run returns."""
    srv = aiosmtpd(pipelining=True)
    src = tmp_path / "in.eml"
    src.write_bytes(MESSAGES["plain"])
    p = subprocess.run([driver("dkim_client"), "bulk", "127.0.0.1", str(srv.port), "--domain", DOMAIN,
                        "--key", f"rsa={keys['rsa']['path']}", "--count", "400", "--connections", "2",
                        "--cancel-after", "5", str(src)], capture_output=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    out = p.stdout.decode()
    taken = int(out.split("taken ")[1])
    assert 5 <= taken < 400, out
    assert b"canceled (freed)" not in p.stderr  # reported by the run, not by free
