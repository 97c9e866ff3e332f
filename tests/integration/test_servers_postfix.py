"""Self-tests of the private Postfix fixture (servers/postfix.py), with Python's
smtplib (and curl) as the client."""
import base64
import hashlib
import hmac
import os
import smtplib
import socket
import ssl
import subprocess

import pytest

from servers.certs import certs  # noqa: F401
from servers.postfix import postfix, postfix_server, smtp_sink  # noqa: F401

MSG = b"From: a@example.org\r\nTo: b@example.net\r\nSubject: hi\r\n\r\nhello\r\n.leading dot\r\n"


def ctx(postfix, client_cert=None):
    c = ssl.create_default_context(cafile=postfix.ca_file)
    if client_cert:
        c.load_cert_chain(client_cert.cert, client_cert.key)
    return c


def ehlo_caps(s):
    code, _ = s.ehlo("client.example.org")
    assert code == 250
    return s.esmtp_features


def test_private_instance_only(postfix):
    out = postfix.postconf("-h", "config_directory", "queue_directory", "data_directory").split()
    assert all(p.startswith(postfix.dir + "/") for p in out)
    pid = open(os.path.join(postfix.queue_dir, "pid", "master.pid")).read().split()[0]
    assert os.path.exists(f"/proc/{pid}")
    # the system instance is not running (nothing of ours started it)
    assert not os.path.exists("/var/spool/postfix/pid/master.pid") or \
        subprocess.run(["postfix", "status"], capture_output=True).returncode != 0


def test_plain_capabilities(postfix):
    with smtplib.SMTP(postfix.host, postfix.port, timeout=30) as s:
        caps = ehlo_caps(s)
    for c in ("pipelining", "8bitmime", "dsn", "smtputf8", "chunking", "enhancedstatuscodes"):
        assert c in caps, caps
    assert caps["size"] == str(postfix.size_limit)
    assert "starttls" not in caps and "auth" not in caps


def test_plain_delivery_and_envelope(postfix):
    with smtplib.SMTP(postfix.host, postfix.port, timeout=30) as s:
        s.sendmail("a@example.org", ["b@example.net", "c@other.example"], MSG)
    msgs = postfix.wait_for(2)
    assert len(msgs) == 2
    assert sorted(m.rcpt_to for m in msgs) == ["b@example.net", "c@other.example"]
    for m in msgs:
        assert m.mail_from == "a@example.org"
        assert m.delivered_to == m.rcpt_to
        assert m.original == MSG.replace(b"\r\n", b"\n")
        assert m.original_crlf == MSG
        assert "by mx.smtpc.test (Postfix) with ESMTP" in m.received
        assert m.header("Subject") == "hi"


def test_clear_empties_maildir(postfix):
    with smtplib.SMTP(postfix.host, postfix.port, timeout=30) as s:
        s.sendmail("a@example.org", ["x@example.org"], MSG)
    postfix.wait_for(1)
    postfix.clear()
    assert postfix.messages() == []


def test_null_sender_and_ipv6(postfix):
    with smtplib.SMTP(postfix.host6, postfix.port, timeout=30) as s:
        s.sendmail("", ["postmaster@example.org"], MSG)
    [m] = postfix.wait_for(1)
    assert m.mail_from == ""
    assert "IPv6:::1" in m.received


def test_smtputf8_and_dsn_and_8bit(postfix):
    body = "From: jörg@exämple.org\r\nSubject: grüße\r\n\r\nÄÖÜ\r\n".encode()
    with smtplib.SMTP(postfix.host, postfix.port, timeout=30) as s:
        s.ehlo()
        s.sendmail("jörg@exämple.org", ["用户@例子.example"], body,
                   mail_options=["SMTPUTF8", "BODY=8BITMIME", "RET=HDRS", "ENVID=abc123"],
                   rcpt_options=["NOTIFY=NEVER", "ORCPT=rfc822;x@example.org"])
    [m] = postfix.wait_for(1)
    assert m.mail_from == "jörg@exämple.org"
    assert m.rcpt_to == "用户@例子.example"
    assert m.original_crlf == body


def test_size_limit_enforced(postfix):
    with smtplib.SMTP(postfix.host, postfix.port, timeout=30) as s:
        s.ehlo()
        code, msg = s.mail("a@example.org", [f"SIZE={postfix.size_limit + 1}"])
        assert code == 552 and msg.startswith(b"5.3.4"), (code, msg)


def test_chunking_bdat_and_pipelining(postfix):
    """A raw BDAT transaction with pipelined commands."""
    body = b"Subject: bdat\r\n\r\nchunked\r\n"
    with socket.create_connection((postfix.host, postfix.port), timeout=30) as s:
        f = s.makefile("rb")

        def reply():
            lines = []
            while True:
                line = f.readline()
                lines.append(line)
                if line[3:4] != b"-":
                    return lines
        assert reply()[0].startswith(b"220 ")
        s.sendall(b"EHLO c.example.org\r\n")
        assert any(b"CHUNKING" in x for x in reply())
        s.sendall(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<bdat@example.org>\r\n"
                  + b"BDAT 10\r\n" + body[:10] + b"BDAT %d LAST\r\n" % (len(body) - 10) + body[10:])
        for _ in range(4):
            r = reply()
            assert r[-1].startswith(b"250"), r
        s.sendall(b"QUIT\r\n")
        assert reply()[0].startswith(b"221")
    [m] = postfix.wait_for(1)
    assert m.original_crlf == body
    assert "with ESMTP" in m.received


def test_submission_starttls_then_auth(postfix):
    with smtplib.SMTP(postfix.host, postfix.submission_port, timeout=30) as s:
        caps = ehlo_caps(s)
        assert "starttls" in caps and "auth" not in caps  # AUTH only after TLS
        s.starttls(context=ctx(postfix))
        caps = ehlo_caps(s)
        assert caps["auth"].split() == postfix.mechanisms
        assert "chunking" in caps and "pipelining" in caps
        assert s.sock.version() in ("TLSv1.2", "TLSv1.3")


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN", "CRAM-MD5"])
@pytest.mark.parametrize("user", ["alice", "bob", "carol@example.org"])
def test_submission_auth_mechanisms(postfix, mech, user):
    with smtplib.SMTP(postfix.host, postfix.submission_port, timeout=30) as s:
        s.starttls(context=ctx(postfix))
        s.ehlo()
        s.user, s.password = user, postfix.users[user]
        code, _ = s.auth(mech, getattr(s, "auth_" + mech.lower().replace("-", "_")))
        assert code == 235
        s.sendmail("a@example.org", ["auth@example.org"], MSG)
    [m] = postfix.wait_for(1)
    assert "ESMTPSA" in m.received and "TLS" in m.received


def scram_auth(s, mech, user, password):
    """Minimal RFC 5802 SCRAM client over smtplib (no channel binding)."""
    hname = {"SCRAM-SHA-1": "sha1", "SCRAM-SHA-256": "sha256"}[mech]
    nonce = base64.b64encode(os.urandom(18)).decode()
    first_bare = f"n={user},r={nonce}"
    code, resp = s.docmd("AUTH", f"{mech} " + base64.b64encode(("n,," + first_bare).encode()).decode())
    assert code == 334, (code, resp)
    server_first = base64.b64decode(resp).decode()
    attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
    assert attrs["r"].startswith(nonce)
    salted = hashlib.pbkdf2_hmac(hname, password.encode(), base64.b64decode(attrs["s"]), int(attrs["i"]))
    client_key = hmac.new(salted, b"Client Key", hname).digest()
    stored = hashlib.new(hname, client_key).digest()
    final_wo_proof = f"c=biws,r={attrs['r']}"
    auth_msg = f"{first_bare},{server_first},{final_wo_proof}".encode()
    sig = hmac.new(stored, auth_msg, hname).digest()
    proof = bytes(a ^ b for a, b in zip(client_key, sig))
    final = f"{final_wo_proof},p={base64.b64encode(proof).decode()}"
    code, resp = s.docmd(base64.b64encode(final.encode()).decode())
    if code == 334:  # server-final sent as a challenge; verify it and answer empty
        server_key = hmac.new(salted, b"Server Key", hname).digest()
        v = base64.b64encode(hmac.new(server_key, auth_msg, hname).digest()).decode()
        assert base64.b64decode(resp).decode() == f"v={v}"
        code, resp = s.docmd("")
    return code, resp


@pytest.mark.parametrize("mech", ["SCRAM-SHA-1", "SCRAM-SHA-256"])
def test_submission_scram(postfix, mech):
    with smtplib.SMTP(postfix.host, postfix.submission_port, timeout=30) as s:
        s.starttls(context=ctx(postfix))
        s.ehlo()
        code, resp = scram_auth(s, mech, "alice", postfix.password)
        assert code == 235, resp
        code, resp = smtplib.SMTP.docmd(s, "NOOP")
        s.sendmail("a@example.org", ["scram@example.org"], MSG)
    postfix.wait_for(1)


def test_scram_wrong_password_refused(postfix):
    with smtplib.SMTP(postfix.host, postfix.submission_port, timeout=30) as s:
        s.starttls(context=ctx(postfix))
        s.ehlo()
        code, resp = scram_auth(s, "SCRAM-SHA-256", "alice", "wrong")
        assert code == 535, (code, resp)


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN", "CRAM-MD5"])
def test_wrong_password_refused(postfix, mech):
    with smtplib.SMTP(postfix.host, postfix.submission_port, timeout=30) as s:
        s.starttls(context=ctx(postfix))
        s.ehlo()
        s.user, s.password = "alice", "wrong"
        with pytest.raises(smtplib.SMTPAuthenticationError) as e:
            s.auth(mech, getattr(s, "auth_" + mech.lower().replace("-", "_")))
        assert e.value.smtp_code == 535 and e.value.smtp_error.startswith(b"5.7.8")


def test_submission_auth_before_starttls_refused(postfix):
    with smtplib.SMTP(postfix.host, postfix.submission_port, timeout=30) as s:
        s.ehlo()
        code, _ = s.docmd("AUTH", "PLAIN " + base64.b64encode(b"\0alice\0alice-secret").decode())
        assert code in (502, 503, 530, 538)


def test_smtps_implicit_tls_and_auth(postfix):
    with smtplib.SMTP_SSL(postfix.host, postfix.smtps_port, context=ctx(postfix), timeout=30) as s:
        caps = ehlo_caps(s)
        assert "starttls" not in caps
        assert caps["auth"].split() == postfix.mechanisms
        s.login(postfix.user, postfix.password)
        s.sendmail("a@example.org", ["smtps@example.org"], MSG)
    [m] = postfix.wait_for(1)
    assert "ESMTPSA" in m.received


def test_smtps_ipv6(postfix):
    with smtplib.SMTP_SSL(postfix.host6, postfix.smtps_port, context=ctx(postfix), timeout=30) as s:
        s.login(postfix.user, postfix.password)


def test_auth_plain_port_offers_auth_in_cleartext(postfix):
    with smtplib.SMTP(postfix.host, postfix.auth_plain_port, timeout=30) as s:
        caps = ehlo_caps(s)
        assert "starttls" not in caps
        assert caps["auth"].split() == postfix.mechanisms
        s.user, s.password = postfix.user, postfix.password
        assert s.auth("CRAM-MD5", s.auth_cram_md5)[0] == 235
        s.sendmail("a@example.org", ["clear@example.org"], MSG)
    [m] = postfix.wait_for(1)
    assert "ESMTPA" in m.received


def test_ccert_port_requires_starttls_and_client_cert(postfix):
    with smtplib.SMTP(postfix.host, postfix.ccert_port, timeout=30) as s:
        s.ehlo()
        code, msg = s.mail("a@example.org")
        assert code == 530  # Must issue a STARTTLS command first
    # TLS without a client certificate: Postfix drops the connection after the
    # handshake (TLS 1.3: the client only learns it at its next read)
    with smtplib.SMTP(postfix.host, postfix.ccert_port, timeout=30) as s:
        with pytest.raises((smtplib.SMTPServerDisconnected, ssl.SSLError, ConnectionError)):
            s.starttls(context=ctx(postfix))
            s.ehlo()
            s.mail("a@example.org")
    # with the client certificate from the test CA: accepted, and Postfix says it verified it
    with smtplib.SMTP(postfix.host, postfix.ccert_port, timeout=30) as s:
        s.starttls(context=ctx(postfix, postfix.certs.client))
        s.ehlo()
        s.sendmail("a@example.org", ["ccert@example.org"], MSG)
    [m] = postfix.wait_for(1)
    assert 'Client CN "client.smtpc.test"' in m.received
    assert "verified OK" in m.received


def test_curl_plain_and_starttls_auth(postfix, tmp_path):
    f = tmp_path / "m.eml"
    f.write_bytes(MSG)
    r = subprocess.run(["curl", "-sS", f"smtp://127.0.0.1:{postfix.port}", "--mail-from", "a@example.org",
                        "--mail-rcpt", "curl1@example.org", "-T", str(f)], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(["curl", "-sS", f"smtp://localhost:{postfix.submission_port}", "--ssl-reqd",
                        "--cacert", postfix.ca_file, "--user", f"{postfix.user}:{postfix.password}",
                        "--mail-from", "a@example.org", "--mail-rcpt", "curl2@example.org", "-T", str(f)],
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(["curl", "-sS", f"smtps://localhost:{postfix.smtps_port}",
                        "--cacert", postfix.ca_file, "--user", f"{postfix.user}:{postfix.password}",
                        "--mail-from", "a@example.org", "--mail-rcpt", "curl3@example.org", "-T", str(f)],
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    msgs = postfix.wait_for(3)
    assert sorted(m.rcpt_to for m in msgs) == ["curl1@example.org", "curl2@example.org", "curl3@example.org"]
    assert all(m.original == MSG.replace(b"\r\n", b"\n") for m in msgs)


def test_many_messages_fast(postfix):
    with smtplib.SMTP(postfix.host, postfix.port, timeout=30) as s:
        for i in range(50):
            s.sendmail("a@example.org", [f"n{i}@example.org"], MSG)
    msgs = postfix.wait_for(50, timeout=60)
    assert sorted(m.rcpt_to for m in msgs) == sorted(f"n{i}@example.org" for i in range(50))


def test_smtp_sink(smtp_sink):
    with smtplib.SMTP(smtp_sink.host, smtp_sink.port, timeout=30) as s:
        caps = ehlo_caps(s)
        assert "pipelining" in caps
        s.sendmail("a@example.org", ["b@example.org"], MSG)
