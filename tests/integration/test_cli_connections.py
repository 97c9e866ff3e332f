"""smtpc send with --count/--connections against Postfix: the same options,
the same security and the same messages as a single send (the issue: a
performance flag sent in plain text to a server offering STARTTLS, refused
--tls none and every composing option); header encoding by what the
transaction declares (SMTPUTF8 only when an address needs it)."""
import email
import email.policy
import os
import re
import subprocess

import pytest

from servers.postfix import postfix, postfix_server  # noqa: F401
from servers.proxies import socks5_proxy  # noqa: F401

FROM = "sender@example.org"


def env_for(tmp_path, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMTPC_")}
    env.update(HOME=str(tmp_path), SMTPC_CONFIG="/dev/null", **extra)
    return env


def send(smtpc_bin, tmp_path, port, *args, env=None, sender=FROM):
    return subprocess.run([smtpc_bin, "send", "--server", f"127.0.0.1:{port}", "--from", sender, *args],
                          cwd=tmp_path, capture_output=True, timeout=180, env=env or env_for(tmp_path))


def tls_used(m):
    return "using TLS" in m.received


# ---- no --tls: the library's default policy, with or without --connections ----

@pytest.mark.parametrize("extra", [[], ["--count", "6", "--connections", "3"], ["--count", "4"]],
                         ids=["single", "connections", "count"])
def test_starttls_offered_is_used_without_tls_option(smtpc_bin, tmp_path, postfix, extra):
    # a port other than 25/465 without --tls: STARTTLS required, verified
    port = postfix.starttls_ports["server"]
    r = send(smtpc_bin, tmp_path, port, "--ca-file", postfix.ca_file, "--to", "b@example.net",
             "--subject", "secure", "--text", "x", *extra)
    assert r.returncode == 0, r.stderr.decode()
    n = int(extra[1]) if extra else 1
    msgs = postfix.wait_for(n)
    assert len(msgs) == n and all(tls_used(m) for m in msgs), [m.received for m in msgs]


@pytest.mark.parametrize("extra", [[], ["--count", "4", "--connections", "2"]], ids=["single", "connections"])
def test_no_silent_plaintext_when_starttls_is_missing(smtpc_bin, tmp_path, postfix, extra):
    # postfix.port offers no STARTTLS: without --tls nothing is sent
    r = send(smtpc_bin, tmp_path, postfix.port, "--to", "b@example.net", "--text", "x", *extra)
    assert r.returncode != 0
    assert b"STARTTLS" in r.stderr, r.stderr
    assert postfix.settle() == []


@pytest.mark.parametrize("mode,port_name,tls", [
    ("none", "port", False), ("starttls", "starttls", True), ("starttls-optional", "starttls", True),
    ("starttls-optional", "port", False),
    ("implicit", "smtps_port", True),
    ("auto", "smtps_port", True), ("auto", "starttls", True), ("auto", "port", False)])
def test_tls_modes_with_connections(smtpc_bin, tmp_path, postfix, mode, port_name, tls):
    port = postfix.starttls_ports["server"] if port_name == "starttls" else getattr(postfix, port_name)
    auth = ["--user", "alice", "--password-env", "PW"] if port_name == "smtps_port" else []
    r = send(smtpc_bin, tmp_path, port, "--tls", mode, "--ca-file", postfix.ca_file, *auth,
             "--to", "b@example.net", "--text", "x", "--count", "4", "--connections", "2",
             env=env_for(tmp_path, PW=postfix.users["alice"]))
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout.decode().count("sent to 1 recipient") == 4
    assert b"4 sent, 0 not sent" in r.stderr
    msgs = postfix.wait_for(4)
    assert len(msgs) == 4 and all(tls_used(m) == tls for m in msgs), [m.received for m in msgs]


def test_wrong_ca_fails_with_connections(smtpc_bin, tmp_path, postfix):
    # verification is on: the system store does not know the test CA
    r = send(smtpc_bin, tmp_path, postfix.starttls_ports["server"], "--tls", "starttls", "--to", "b@example.net",
             "--text", "x", "--count", "2", "--connections", "2")
    assert r.returncode != 0
    assert postfix.settle() == []


# ---- composed messages over K connections --------------------------------------------

def test_composed_message_with_connections(smtpc_bin, tmp_path, postfix):
    (tmp_path / "report.pdf").write_bytes(b"%PDF-1.4 not really\n" * 50)
    r = send(smtpc_bin, tmp_path, postfix.port, "--tls", "none", "--to", "Bob <b@example.net>",
             "--cc", "c@example.net", "--bcc", "hidden@example.net", "--subject", "composed",
             "--text", "plain body", "--html", "<p>html body</p>", "--attach", "report.pdf",
             "--header", "X-Campaign: 7", "--count", "5", "--connections", "8", "--json")
    assert r.returncode == 0, r.stderr.decode()
    msgs = postfix.wait_for(15)  # 5 copies x 3 recipients
    assert sorted({m.rcpt_to for m in msgs}) == ["b@example.net", "c@example.net", "hidden@example.net"]
    ids = set()
    for m in msgs:
        p = m.parsed()
        assert p["Subject"] == "composed" and p["X-Campaign"] == "7" and p["Bcc"] is None
        assert b"hidden@" not in m.original
        alt = p.get_body(("plain",))
        assert alt.get_content().strip() == "plain body"
        assert p.get_body(("html",)).get_content().strip() == "<p>html body</p>"
        att = [a for a in p.iter_attachments()]
        assert [a.get_filename() for a in att] == ["report.pdf"]
        assert att[0].get_content() == b"%PDF-1.4 not really\n" * 50
        ids.add(p["Message-ID"])
    assert len(ids) == 5  # a Message-ID per copy, the same for a copy's recipients


# ---- SMTPUTF8: declared only when an address needs it; headers follow -----------------

def ascii_header(m):
    head = m.original.split(b"\n\n", 1)[0]
    return all(b < 0x80 for b in head)


@pytest.mark.parametrize("extra", [[], ["--count", "2", "--connections", "2"]], ids=["single", "connections"])
def test_non_ascii_subject_and_name_are_encoded_words(smtpc_bin, tmp_path, postfix, extra):
    # Postfix offers SMTPUTF8; no address needs it: a plain ESMTP transaction
    # with RFC 2047 encoded words, which Python decodes back
    r = send(smtpc_bin, tmp_path, postfix.port, "--tls", "none", "--to", "J\u00fcrgen <j@example.net>", "--subject", "Gr\u00fc\u00dfe aus K\u00f6ln", "--text", "h\u00e9",
             *(["--trace"] if not extra else []), *extra, sender="Zo\u00eb Gr\u00fc\u00df <z@example.org>")
    assert r.returncode == 0, r.stderr.decode()
    msgs = postfix.wait_for(int(extra[1]) if extra else 1)
    for m in msgs:
        assert ascii_header(m), m.original[:600]
        p = m.parsed()
        assert p["Subject"] == "Gr\u00fc\u00dfe aus K\u00f6ln"
        assert p["From"].addresses[0].display_name == "Zo\u00eb Gr\u00fc\u00df"
        assert p["To"].addresses[0].display_name == "J\u00fcrgen"
    if not extra:
        mail = [l for l in r.stderr.decode().splitlines() if "C: MAIL FROM:" in l]
        assert mail and "SMTPUTF8" not in mail[0], mail


def test_non_ascii_local_part_declares_smtputf8(smtpc_bin, tmp_path, postfix):
    r = send(smtpc_bin, tmp_path, postfix.port, "--tls", "none", "--to", "j\u00f6rg@example.net",
             "--subject", "\u00fc", "--text", "x", "--trace")
    assert r.returncode == 0, r.stderr.decode()
    mail = [l for l in r.stderr.decode().splitlines() if "C: MAIL FROM:" in l]
    assert mail and "SMTPUTF8" in mail[0], mail
    [m] = postfix.wait_for(1)
    assert m.rcpt_to == "j\u00f6rg@example.net"
    assert "Subject: \u00fc".encode() in m.original  # raw UTF-8 header in an SMTPUTF8 transaction


# ---- envelopes from headers: the library's loader (bulk --dir, sendmail -t) ------------

BCC_SPACE = (b"From: Ann <ann@example.org>\r\nTo: to@example.net\r\nBcc : hidden@example.net,\r\n"
             b" \"Doe, J\" <jd@example.net>\r\nSubject: bcc\r\n\r\nbody\r\n")


def check_bcc_space(postfix):
    msgs = postfix.wait_for(3)
    assert sorted(m.rcpt_to for m in msgs) == ["hidden@example.net", "jd@example.net", "to@example.net"]
    for m in msgs:
        assert m.mail_from == "ann@example.org"
        assert b"Bcc" not in m.original and b"hidden@" not in m.original and b"jd@" not in m.original
        assert m.parsed()["Subject"] == "bcc"


def test_bulk_dir_bcc_with_space_before_colon(smtpc_bin, tmp_path, postfix):
    d = tmp_path / "out"
    d.mkdir()
    (d / "1.eml").write_bytes(BCC_SPACE)
    r = subprocess.run([smtpc_bin, "bulk", "--server", f"127.0.0.1:{postfix.port}", "--tls", "none", "--dir", str(d)],
                       cwd=tmp_path, capture_output=True, timeout=120, env=env_for(tmp_path))
    assert r.returncode == 0, r.stderr.decode()
    check_bcc_space(postfix)


def test_sendmail_t_bcc_with_space_before_colon(smtpc_bin, tmp_path, postfix):
    r = subprocess.run([smtpc_bin, "sendmail", "-t", "-i"], input=BCC_SPACE, cwd=tmp_path, capture_output=True,
                       timeout=120, env=env_for(tmp_path, SMTPC_SERVER=f"127.0.0.1:{postfix.port}", SMTPC_TLS="none"))
    assert r.returncode == 0, r.stderr.decode()
    check_bcc_space(postfix)


# ---- every connection option with --connections (one smtpc_conn_opts) -----------------

def many(smtpc_bin, tmp_path, port, *args, server="127.0.0.1", n=4):
    return subprocess.run([smtpc_bin, "send", "--server", f"{server}:{port}", "--from", FROM, "--to", "b@example.net",
                           "--text", "x", "--count", str(n), "--connections", "2", *args],
                          cwd=tmp_path, capture_output=True, timeout=180, env=env_for(tmp_path))


def test_pin_with_connections(smtpc_bin, tmp_path, postfix):
    port = postfix.starttls_ports["server"]
    good = "sha256//" + postfix.certs["server"].pin_sha256
    r = many(smtpc_bin, tmp_path, port, "--ca-file", postfix.ca_file, "--pin", good)
    assert r.returncode == 0, r.stderr.decode()
    assert len(postfix.wait_for(4)) == 4
    postfix.clear()
    r = many(smtpc_bin, tmp_path, port, "--ca-file", postfix.ca_file, "--pin", "sha256//" + "A" * 43 + "=")
    assert r.returncode != 0 and postfix.settle() == []


def test_client_certificate_with_connections(smtpc_bin, tmp_path, postfix):
    cl = postfix.certs["client"]
    r = many(smtpc_bin, tmp_path, postfix.ccert_port, "--ca-file", postfix.ca_file, "--cert", cl.cert, "--key", cl.key)
    assert r.returncode == 0, r.stderr.decode()
    msgs = postfix.wait_for(4)
    assert all("verified OK" in m.received for m in msgs), [m.received for m in msgs]
    postfix.clear()
    r = many(smtpc_bin, tmp_path, postfix.ccert_port, "--ca-file", postfix.ca_file)
    assert r.returncode != 0 and postfix.settle() == []


def test_tls_versions_with_connections(smtpc_bin, tmp_path, postfix):
    port = postfix.starttls_ports["tls12_only"]
    r = many(smtpc_bin, tmp_path, port, "--ca-file", postfix.ca_file, "--tls-min", "1.3")
    assert r.returncode != 0 and postfix.settle() == []
    r = many(smtpc_bin, tmp_path, port, "--ca-file", postfix.ca_file, "--tls-max", "1.2")
    assert r.returncode == 0, r.stderr.decode()
    assert all("TLSv1.2" in m.received for m in postfix.wait_for(4))


@pytest.mark.parametrize("args,server,peer", [
    (["-4"], "localhost", "[127.0.0.1]"), (["-6"], "[::1]", "[IPv6:::1]"),
    (["--bind", "127.0.0.2"], "127.0.0.1", "[127.0.0.2]")])
def test_family_and_bind_with_connections(smtpc_bin, tmp_path, postfix, args, server, peer):
    r = many(smtpc_bin, tmp_path, postfix.port, "--tls", "none", *args, server=server)
    assert r.returncode == 0, r.stderr.decode()
    msgs = postfix.wait_for(4)
    assert all(peer in m.received for m in msgs), [m.received for m in msgs]


def test_proxy_and_starttls_with_connections(smtpc_bin, tmp_path, postfix, socks5_proxy):
    port = postfix.starttls_ports["server"]
    r = many(smtpc_bin, tmp_path, port, "--ca-file", postfix.ca_file, "--proxy",
             f"socks5h://{socks5_proxy.host}:{socks5_proxy.port}")
    assert r.returncode == 0, r.stderr.decode()
    assert all(tls_used(m) for m in postfix.wait_for(4))


def test_non_ascii_local_part_with_connections(smtpc_bin, tmp_path, postfix):
    # the envelope needs SMTPUTF8: the run declares it, and the headers may be raw UTF-8
    r = send(smtpc_bin, tmp_path, postfix.port, "--tls", "none", "--to", "J\u00f6rg <j\u00f6rg@example.net>",
             "--subject", "\u00fc", "--text", "x", "--count", "2", "--connections", "2")
    assert r.returncode == 0, r.stderr.decode()
    msgs = postfix.wait_for(2)
    assert [m.rcpt_to for m in msgs] == ["j\u00f6rg@example.net"] * 2
    assert all(m.parsed()["Subject"] == "\u00fc" for m in msgs)


def test_header_only_smtputf8_address_is_refused_with_connections(smtpc_bin, tmp_path, postfix):
    # a run declares SMTPUTF8 for envelope addresses only: a UTF-8 Reply-To
    # local part cannot go out raw in a plain transaction, nor be encoded
    r = send(smtpc_bin, tmp_path, postfix.port, "--tls", "none", "--to", "b@example.net",
             "--reply-to", "j\u00f6rg@example.net", "--text", "x", "--count", "2", "--connections", "2")
    assert r.returncode == 69 and b"SMTPUTF8" in r.stderr, r.stderr
    assert postfix.settle() == []


def test_bulk_dir_uses_starttls_without_tls_option(smtpc_bin, tmp_path, postfix):
    # smtpc bulk has send's policy too: it sent in plain text without --tls
    d = tmp_path / "out"
    d.mkdir()
    for i in range(3):
        (d / f"{i}.eml").write_bytes(b"From: a@example.org\r\nTo: b@example.net\r\nSubject: %d\r\n\r\nx\r\n" % i)
    r = subprocess.run([smtpc_bin, "bulk", "--server", f"127.0.0.1:{postfix.starttls_ports['server']}", "--ca-file",
                        postfix.ca_file, "--dir", str(d), "--connections", "2"],
                       cwd=tmp_path, capture_output=True, timeout=120, env=env_for(tmp_path))
    assert r.returncode == 0, r.stderr.decode()
    msgs = postfix.wait_for(3)
    assert len(msgs) == 3 and all(tls_used(m) for m in msgs), [m.received for m in msgs]
