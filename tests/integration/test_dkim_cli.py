"""DKIM and one-click unsubscribe in the CLI: --dkim-key/--dkim-selector/
--dkim-domain (and the account's dkim-* keys) on send (composed, --message
FILE, --count/--connections), sendmail (standard input), bulk --dir and
queue flush; --list-unsubscribe; `smtpc dkim keygen` and `smtpc dkim verify`.
Every signature is checked by dkimpy and Mail::DKIM on the bytes the server
recorded (aiosmtpd), and on what Postfix delivered."""
import os
import re
import subprocess

import dkim
import pytest

from conftest import driver, sanitized
from servers.aiosmtpd_server import aiosmtpd  # noqa: F401
from servers.postfix import postfix, postfix_server  # noqa: F401
from test_dkim import DOMAIN, dkimpy_results, keys, perl_results, records  # noqa: F401
from test_dkim_client import pickup_message

RAW = b"From: Alice <alice@example.org>\r\nTo: bob@example.com\r\nSubject: raw\r\n\r\nraw body  \r\n\r\n"


def env(tmp_path, config="/dev/null"):
    e = {k: v for k, v in os.environ.items() if not k.startswith("SMTPC_")}
    e["HOME"] = str(tmp_path)
    e["SMTPC_CONFIG"] = config
    return e


def smtpc(smtpc_bin, tmp_path, *args, input=None, config="/dev/null", timeout=120, wrap=()):
    return subprocess.run([*wrap, smtpc_bin, *args], capture_output=True, input=input, timeout=timeout,
                          env=env(tmp_path, config), cwd=tmp_path)


def dual(keys):
    return ["--dkim-domain", DOMAIN, "--dkim-key", keys["rsa"]["path"], "--dkim-selector", "rsa",
            "--dkim-key", keys["ed"]["path"], "--dkim-selector", "ed"]


def server(port):
    return ["--server", f"127.0.0.1:{port}", "--tls", "none"]


def both_verify(tmp_path, data, keys, n=2):
    assert dkimpy_results(data, keys) == [True] * n
    f = tmp_path / "v.eml"
    f.write_bytes(data)
    r = perl_results([f], keys)[str(f)]
    assert r[0].startswith("pass rsa-sha256"), r


def signed_names(data):
    head = data.split(b"\r\n\r\n")[0].replace(b"\r\n ", b"").replace(b"\r\n\t", b"")
    m = re.search(rb"DKIM-Signature:[^\r]*?h=([^;]*);", head)
    return m.group(1).replace(b" ", b"").split(b":")


def test_send_composed_signed_with_unsubscribe(smtpc_bin, tmp_path, keys, aiosmtpd):
    srv = aiosmtpd(pipelining=True)
    p = smtpc(smtpc_bin, tmp_path, "send", *server(srv.port), "--from", "alice@example.org", "--to", "bob@example.com",
              "--subject", "Grüße", "--text", "hello  \n\n", *dual(keys),
              "--list-unsubscribe", "https://example.org/u?r={rcpt}", "--list-unsubscribe", "mailto:u@example.org")
    assert p.returncode == 0, p.stderr
    [e] = srv.envelopes
    assert b"List-Unsubscribe: <https://example.org/u?r=bob%40example.com>,\r\n <mailto:u@example.org>" in e.data
    assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" in e.data
    names = signed_names(e.data)
    assert names.count(b"list-unsubscribe") == 2 and names.count(b"list-unsubscribe-post") == 2
    both_verify(tmp_path, e.data, keys)
    # the unsubscribe URL is covered by the signature
    assert dkimpy_results(e.data.replace(b"u?r=bob", b"u?r=eve"), keys) == [False, False]


def test_send_message_file_signed(smtpc_bin, tmp_path, keys, aiosmtpd):
    srv = aiosmtpd(pipelining=True)
    (tmp_path / "m.eml").write_bytes(RAW)
    p = smtpc(smtpc_bin, tmp_path, "send", *server(srv.port), "--from", "alice@example.org", "--to", "bob@example.com",
              "--message", "m.eml", *dual(keys), "--list-unsubscribe", "mailto:u@example.org?subject=x")
    assert p.returncode == 0, p.stderr
    [e] = srv.envelopes
    assert e.data.endswith(b"List-Unsubscribe: <mailto:u@example.org?subject=x>\r\n" + RAW)
    # mailto only: no one-click
    assert b"List-Unsubscribe-Post" not in e.data
    both_verify(tmp_path, e.data, keys)


def test_sendmail_stdin_signed_from_the_account(smtpc_bin, tmp_path, keys, aiosmtpd):
    """sendmail -t from a pipe (spooled), signed with the account's
    dkim-* keys (two keys, comma-separated)."""
    srv = aiosmtpd(pipelining=True)
    conf = tmp_path / "c.conf"
    conf.write_text(f"[account a]\nserver = 127.0.0.1\nport = {srv.port}\ntls = none\n"
                    f"dkim-key = {keys['rsa']['path']}, {keys['ed']['path']}\ndkim-selector = rsa, ed\n"
                    f"dkim-domain = {DOMAIN}\ndkim-algorithm = rsa-sha256, ed25519-sha256\n")
    msg = b"From: alice@example.org\nTo: bob@example.com\nSubject: piped\n\nline  \n.dot\n"
    p = smtpc(smtpc_bin, tmp_path, "sendmail", "-t", "-i", input=msg, config=str(conf))
    assert p.returncode == 0, p.stderr
    [e] = srv.envelopes
    both_verify(tmp_path, e.data, keys)


def test_send_count_connections_signed(smtpc_bin, tmp_path, keys, aiosmtpd):
    srv = aiosmtpd(pipelining=True)
    p = smtpc(smtpc_bin, tmp_path, "send", *server(srv.port), "--from", "alice@example.org", "--to", "bob@example.com",
              "--subject", "copies", "--text", "x", "--count", "6", "--connections", "2", "--quiet", *dual(keys))
    assert p.returncode == 0, p.stderr
    assert len(srv.envelopes) == 6
    for e in srv.envelopes:
        assert dkimpy_results(e.data, keys) == [True, True]


def test_bulk_dir_signed_with_per_message_unsubscribe(smtpc_bin, tmp_path, keys, aiosmtpd):
    srv = aiosmtpd(pipelining=True)
    d = tmp_path / "dir"
    d.mkdir()
    for i in range(5):
        (d / f"m{i}.eml").write_bytes(f"X-Sender: alice@example.org\r\nX-Receiver: r{i}@example.com\r\n"
                                      f"From: alice@example.org\r\nSubject: {i}\r\n\r\nbody {i}\r\n".encode())
    p = smtpc(smtpc_bin, tmp_path, "bulk", *server(srv.port), "--dir", str(d), "--connections", "2", "--quiet",
              *dual(keys), "--list-unsubscribe", "https://example.org/u/{id}/{rcpt}")
    assert p.returncode == 0, p.stderr
    assert len(srv.envelopes) == 5
    for e in srv.envelopes:
        i = int(re.search(rb"Subject: (\d)", e.data).group(1))
        assert f"List-Unsubscribe: <https://example.org/u/m{i}/r{i}%40example.com>\r\n".encode() in e.data
        assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" in e.data
        assert dkimpy_results(e.data, keys) == [True, True]
    both_verify(tmp_path, srv.envelopes[0].data, keys)


def test_pickup_dir_signed_and_relayed(smtpc_bin, tmp_path, keys, aiosmtpd):
    """send --pickup-dir with --dkim-key (composed, --message FILE) and
    sendmail -t: the program that relays a pickup file will not sign it,
    so the file carries the signatures; what the relay (here smtpc bulk
    --dir, unsigned) sends still verifies. Without --dkim-key: unsigned."""
    d = tmp_path / "pickup"
    (tmp_path / "m.eml").write_bytes(RAW)
    base = ["send", "--pickup-dir", str(d), "--from", "alice@example.org", "--to", "bob@example.com"]
    runs = [[*base, "--subject", "Grüße", "--text", "hello  \n\n", "--list-unsubscribe", "https://example.org/u/1"],
            [*base, "--message", "m.eml"]]
    for args in runs:
        p = smtpc(smtpc_bin, tmp_path, *args, *dual(keys))
        assert p.returncode == 0, p.stderr
    p = smtpc(smtpc_bin, tmp_path, "sendmail", "--pickup-dir", str(d), "-t", "-i", *dual(keys),
              input=b"From: alice@example.org\nTo: bob@example.com\nSubject: piped\n\nline  \n")
    assert p.returncode == 0, p.stderr
    files = sorted(d.glob("*.eml"))
    assert len(files) == 3
    for i, f in enumerate(files):
        envelope, msg = pickup_message(f)
        assert envelope == [b"X-Sender: alice@example.org", b"X-Receiver: bob@example.com"], envelope
        assert msg.startswith(b"DKIM-Signature: v=1; a="), msg[:100]
        assert dkimpy_results(msg, keys) == [True, True], i
        v = tmp_path / f"p{i}.eml"
        v.write_bytes(msg)
        assert perl_results([v], keys)[str(v)][0].startswith("pass rsa-sha256")
    assert pickup_message(files[1])[1].endswith(RAW)
    # the relay of the directory sends them as they are
    srv = aiosmtpd(pipelining=True)
    p = smtpc(smtpc_bin, tmp_path, "bulk", *server(srv.port), "--dir", str(d), "--quiet")
    assert p.returncode == 0, p.stderr
    assert len(srv.envelopes) == 3
    for e in srv.envelopes:
        assert dkimpy_results(e.data, keys) == [True, True]
    both_verify(tmp_path, srv.envelopes[0].data, keys)
    # no --dkim-key: unsigned, as before
    u = tmp_path / "plain"
    p = smtpc(smtpc_bin, tmp_path, "send", "--pickup-dir", str(u), "--from", "alice@example.org",
              "--to", "bob@example.com", "--text", "x")
    assert p.returncode == 0, p.stderr
    [f] = u.glob("*.eml")
    assert b"DKIM-Signature" not in f.read_bytes()


def test_queue_flush_signs_when_it_sends(smtpc_bin, tmp_path, keys, aiosmtpd):
    srv = aiosmtpd(pipelining=True)
    p = smtpc(smtpc_bin, tmp_path, "send", "--outbox", "ob", "--from", "alice@example.org", "--to", "bob@example.com",
              "--subject", "later", "--text", "queued")
    assert p.returncode == 0, p.stderr
    assert not any(b"DKIM-Signature" in f.read_bytes() for f in (tmp_path / "ob").rglob("*") if f.is_file())
    p = smtpc(smtpc_bin, tmp_path, "queue", "flush", "--outbox", "ob", *server(srv.port), *dual(keys))
    assert p.returncode == 0, p.stderr
    [e] = srv.envelopes
    both_verify(tmp_path, e.data, keys)
    # K connections (K clients on their own threads): each signs
    for i in range(4):
        p = smtpc(smtpc_bin, tmp_path, "send", "--outbox", "ob", "--from", "alice@example.org",
                  "--to", f"r{i}@example.com", "--subject", f"later {i}", "--text", "queued")
        assert p.returncode == 0, p.stderr
    p = smtpc(smtpc_bin, tmp_path, "queue", "flush", "--connections", "2", "--outbox", "ob", *server(srv.port),
              *dual(keys))
    assert p.returncode == 0, p.stderr
    assert len(srv.envelopes) == 5
    for e in srv.envelopes[1:]:
        assert dkimpy_results(e.data, keys) == [True, True]


def test_signature_survives_postfix(smtpc_bin, tmp_path, keys, postfix):
    p = smtpc(smtpc_bin, tmp_path, "send", "--server", f"{postfix.host}:{postfix.port}", "--tls", "none",
              "--from", "alice@example.org", "--to", "bob@example.com", "--subject", "via postfix",
              "--text", "through a real MTA\n", *dual(keys), "--list-unsubscribe", "https://example.org/u/1")
    assert p.returncode == 0, p.stderr
    [m] = postfix.wait_for(1, timeout=60)
    both_verify(tmp_path, m.raw.replace(b"\n", b"\r\n"), keys)


def dns_from_keygen(out):
    """The record keygen printed, as dkimpy's dnsfunc wants it."""
    m = re.search(r"^(\S+)\. IN TXT \((.*)\)$", out, re.M)
    return m.group(1), "".join(re.findall(r'"([^"]*)"', m.group(2)))


@pytest.mark.parametrize("alg", ["rsa-sha256", "ed25519-sha256"])
def test_keygen_sign_verify_round_trip(smtpc_bin, tmp_path, aiosmtpd, alg):
    p = smtpc(smtpc_bin, tmp_path, "dkim", "keygen", "--domain", DOMAIN, "--selector", "k1", "--algorithm", alg,
              "--out", "k1.pem")
    assert p.returncode == 0, p.stderr
    assert (os.stat(tmp_path / "k1.pem").st_mode & 0o777) == 0o600
    (tmp_path / "dns.txt").write_bytes(p.stdout)
    name, txt = dns_from_keygen(p.stdout.decode())
    assert name == f"k1._domainkey.{DOMAIN}"
    # a second keygen never overwrites a key
    again = smtpc(smtpc_bin, tmp_path, "dkim", "keygen", "--domain", DOMAIN, "--selector", "k1", "--out", "k1.pem")
    assert again.returncode == 73
    srv = aiosmtpd(pipelining=True)
    p = smtpc(smtpc_bin, tmp_path, "send", *server(srv.port), "--from", "alice@example.org", "--to", "bob@example.com",
              "--subject", "k", "--text", "x", "--dkim-domain", DOMAIN, "--dkim-key", "k1.pem", "--dkim-selector", "k1",
              "--dkim-algorithm", alg)
    assert p.returncode == 0, p.stderr
    [e] = srv.envelopes
    (tmp_path / "got.eml").write_bytes(e.data)
    v = smtpc(smtpc_bin, tmp_path, "dkim", "verify", "got.eml", "--dns-txt", "dns.txt")
    assert v.returncode == 0, v.stdout + v.stderr
    assert v.stdout.decode() == f"pass {alg} k1._domainkey.{DOMAIN}\n"

    def dnsfunc(n, timeout=5):
        n = n.decode() if isinstance(n, bytes) else n
        return txt.encode() if n.rstrip(".") == name else b""
    assert dkim.verify(e.data, dnsfunc=dnsfunc)
    # and a changed body fails, exit 1
    (tmp_path / "bad.eml").write_bytes(e.data.replace(b"\r\nx", b"\r\ny"))
    v = smtpc(smtpc_bin, tmp_path, "dkim", "verify", "bad.eml", "--dns-txt", "dns.txt")
    assert v.returncode == 1 and v.stdout.startswith(b"fail "), v.stdout


def test_dkimpy_signed_message_verifies_with_smtpc(smtpc_bin, tmp_path, keys):
    msg = RAW
    sig = dkim.sign(msg, b"rsa", DOMAIN.encode(), keys["rsa"]["pem"], canonicalize=(b"relaxed", b"simple"))
    (tmp_path / "s.eml").write_bytes(sig + msg)
    (tmp_path / "dns.txt").write_text("".join(f"{n} {t}\n" for n, t in records(keys).items()))
    v = smtpc(smtpc_bin, tmp_path, "dkim", "verify", "s.eml", "--dns-txt", "dns.txt")
    assert v.returncode == 0, v.stdout + v.stderr
    assert v.stdout == f"pass rsa-sha256 rsa._domainkey.{DOMAIN}\n".encode()
    # without --dns-txt the key is looked up in DNS: this test machine has
    # no record for it (no key: permerror; no resolver: temperror), exit 1
    v = smtpc(smtpc_bin, tmp_path, "dkim", "verify", "s.eml", timeout=120)
    assert v.returncode == 1, v.stdout + v.stderr
    assert re.match(rb"(perm|temp)error rsa-sha256 rsa\._domainkey\.example\.org", v.stdout), v.stdout
    (tmp_path / "n.eml").write_bytes(msg)
    v = smtpc(smtpc_bin, tmp_path, "dkim", "verify", "n.eml", "--dns-txt", "dns.txt")
    assert v.returncode == 1 and b"no DKIM-Signature" in v.stdout


def test_refusals(smtpc_bin, tmp_path, keys, aiosmtpd):
    srv = aiosmtpd()
    base = ["send", *server(srv.port), "--from", "alice@example.org", "--to", "bob@example.com", "--text", "x"]
    # a key others may read: a configuration error, nothing sent
    loose = tmp_path / "loose.pem"
    loose.write_bytes(keys["ed"]["pem"])
    os.chmod(loose, 0o644)
    p = smtpc(smtpc_bin, tmp_path, *base, "--dkim-domain", DOMAIN, "--dkim-key", str(loose), "--dkim-selector", "s")
    assert p.returncode == 78 and b"accessible by group or others" in p.stderr, p.stderr
    # the wrong kind of key for --dkim-algorithm
    p = smtpc(smtpc_bin, tmp_path, *base, "--dkim-domain", DOMAIN, "--dkim-key", keys["ed"]["path"],
              "--dkim-selector", "s", "--dkim-algorithm", "rsa-sha256")
    assert p.returncode == 78 and b"ed25519-sha256" in p.stderr, p.stderr
    # a key without selector or domain
    p = smtpc(smtpc_bin, tmp_path, *base, "--dkim-key", keys["ed"]["path"])
    assert p.returncode == 64 and b"--dkim-domain" in p.stderr
    # not an https: or mailto: URL (bulk: said once, before any connection)
    p = smtpc(smtpc_bin, tmp_path, *base, "--list-unsubscribe", "http://example.org/u")
    assert p.returncode == 64
    d = tmp_path / "dir"
    d.mkdir()
    for i in range(3):
        (d / f"{i}.eml").write_bytes(b"X-Sender: a@example.org\r\nX-Receiver: b@example.com\r\n\r\nx\r\n")
    p = smtpc(smtpc_bin, tmp_path, "bulk", *server(srv.port), "--dir", str(d), "--list-unsubscribe", "ftp://x")
    assert p.returncode == 64 and p.stderr.count(b"--list-unsubscribe") == 1, p.stderr
    assert srv.envelopes == []


def test_big_attachment_signed_in_bounded_memory(smtpc_bin, tmp_path, keys, aiosmtpd):
    att = tmp_path / "big.bin"
    with open(att, "wb") as f:
        block = os.urandom(1 << 20)
        for _ in range(100):
            f.write(block)
    srv = aiosmtpd(pipelining=True, data_size_limit=200 << 20)
    rss = tmp_path / "rss.txt"
    p = smtpc(smtpc_bin, tmp_path, "send", *server(srv.port), "--from", "alice@example.org", "--to", "bob@example.com",
              "--subject", "big", "--text", "see attachment", "--attach", str(att), *dual(keys), timeout=600,
              wrap=(driver("rss"), str(rss)))
    assert p.returncode == 0, p.stderr
    kib = int(rss.read_text().split()[0])
    if not sanitized():
        assert kib < 16 * 1024, f"{kib} KiB resident"
    [e] = srv.envelopes
    assert dkimpy_results(e.data, keys) == [True, True]
