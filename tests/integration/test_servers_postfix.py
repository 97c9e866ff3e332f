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

from servers.postfix import postfix, postfix_factory, postfix_server, smtp_sink  # noqa: F401

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
        assert m.parsed()["To"] == "b@example.net"
        assert m.parsed().get_content() == "hello\n.leading dot\n"


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


@pytest.mark.parametrize("rcpt,code,enh", [
    ("reject@example.org", 550, b"5.1.1"), ("reject-42@example.org", 550, b"5.1.1"),
    ("tempfail+x@example.org", 450, b"4.2.1"), ("full.y@example.org", 552, b"5.2.2"),
    ("rejected@example.org", 250, b"2.1.5"),  # only the exact word (plus -+. suffix) counts
])
def test_scripted_rcpt_refusals(postfix, rcpt, code, enh):
    with smtplib.SMTP(postfix.host, postfix.port, timeout=30) as s:
        s.ehlo()
        assert s.mail("a@example.org")[0] == 250
        c, msg = s.rcpt(rcpt)
        assert (c, msg[:5]) == (code, enh), msg


def test_partial_recipients_delivered(postfix):
    with smtplib.SMTP(postfix.host, postfix.port, timeout=30) as s:
        refused = s.sendmail("a@example.org", ["ok@example.org", "reject@example.org",
                                               "tempfail@example.org"], MSG)
    assert refused == {"reject@example.org": (550, b"5.1.1 <reject@example.org>: Recipient address "
                                              b"rejected: Recipient rejected (smtpc test)"),
                       "tempfail@example.org": (450, b"4.2.1 <tempfail@example.org>: Recipient "
                                                b"address rejected: Recipient temporarily "
                                                b"unavailable (smtpc test)")}
    [m] = postfix.wait_for(1)
    assert m.rcpt_to == "ok@example.org"


@pytest.mark.parametrize("sender,code", [("sender-reject@example.org", 553),
                                         ("sender-tempfail-1@example.org", 451)])
def test_scripted_sender_refusals_at_mail(postfix, sender, code):
    with smtplib.SMTP(postfix.host, postfix.port, timeout=30) as s:
        s.ehlo()
        c, msg = s.mail(sender)
        assert c == code, msg


@pytest.mark.parametrize("sender,subject,code", [
    ("eod-reject@example.org", "x", 554), ("eod-tempfail@example.org", "x", 451),
    ("a@example.org", "bad [smtpc-reject] one", 550)])
def test_scripted_refusals_after_data(postfix, sender, subject, code):
    with smtplib.SMTP(postfix.host, postfix.port, timeout=30) as s:
        s.ehlo()
        assert s.mail(sender)[0] == 250
        assert s.rcpt("b@example.org")[0] == 250
        c, msg = s.data(f"Subject: {subject}\r\n\r\nbody\r\n".encode())
        assert c == code, msg
    # and with BDAT LAST
    with socket.create_connection((postfix.host, postfix.port), timeout=30) as s:
        f = s.makefile("rb")
        body = f"Subject: {subject}\r\n\r\nbody\r\n".encode()
        s.sendall(b"EHLO c\r\nMAIL FROM:<%s>\r\nRCPT TO:<b@example.org>\r\nBDAT %d LAST\r\n%s"
                  % (sender.encode(), len(body), body))
        replies = []
        while len(replies) < 5:
            line = f.readline()
            if line[3:4] == b" ":
                replies.append(line)
        assert replies[4].startswith(str(code).encode()), replies
    assert postfix.settle() == []


def test_settle_sees_accepted_mail(postfix):
    with smtplib.SMTP(postfix.host, postfix.port, timeout=30) as s:
        s.sendmail("a@example.org", ["settle@example.org"], MSG)
    assert [m.rcpt_to for m in postfix.settle()] == ["settle@example.org"]


def test_factory_with_other_settings(postfix_factory):
    small = postfix_factory(main_cf={"message_size_limit": "2000"})
    with smtplib.SMTP(small.host, small.port, timeout=30) as s:
        caps = ehlo_caps(s)
        assert caps["size"] == "2000"
        # without SIZE= in MAIL FROM the limit bites at the end of DATA
        assert s.mail("a@example.org")[0] == 250
        assert s.rcpt("b@example.org")[0] == 250
        code, msg = s.data(b"Subject: big\r\n\r\n" + b"x" * 3000 + b"\r\n")
        assert code == 552 and msg.startswith(b"5.3.4"), msg


def starttls_verify(postfix, name, server_hostname="localhost"):
    with smtplib.SMTP(postfix.host, postfix.starttls_ports[name], timeout=30) as s:
        s.ehlo()
        s._host = server_hostname  # smtplib uses it as server_hostname for SNI/verification
        s.starttls(context=ctx(postfix))
        s.ehlo()
        return s.sock.version()


@pytest.mark.parametrize("name", ["server", "server_rsa", "chain", "tls12_only"])
def test_starttls_matrix_good(postfix, name):
    v = starttls_verify(postfix, name)
    assert v == "TLSv1.2" if name == "tls12_only" else v == "TLSv1.3"


def test_starttls_matrix_wildcard(postfix):
    starttls_verify(postfix, "wildcard", "mx.example.test")


@pytest.mark.parametrize("name", ["expired", "not_yet_valid", "wrong_host", "self_signed",
                                  "unknown_ca", "chain_incomplete"])
def test_starttls_matrix_bad(postfix, name):
    with pytest.raises(ssl.SSLCertVerificationError):
        starttls_verify(postfix, name)


def test_starttls_matrix_ports_have_no_auth(postfix):
    with smtplib.SMTP(postfix.host, postfix.starttls_ports["server"], timeout=30) as s:
        s.starttls(context=ctx(postfix))
        assert "auth" not in ehlo_caps(s)


def test_dsn_success_notification_lands_in_maildir(postfix):
    with smtplib.SMTP(postfix.host, postfix.port, timeout=30) as s:
        s.sendmail("sender@example.org", ["dsn@example.org"], MSG,
                   mail_options=["RET=HDRS", "ENVID=env-42"], rcpt_options=["NOTIFY=SUCCESS"])
    msgs = postfix.wait_for(2)
    dsn = [m for m in msgs if m.mail_from == ""]
    assert len(dsn) == 1 and dsn[0].rcpt_to == "sender@example.org"
    assert b"multipart/report" in dsn[0].raw and b"env-42" in dsn[0].raw
    assert b"Action: delivered" in dsn[0].raw or b"Action: relayed" in dsn[0].raw


def test_parallel_connections(postfix):
    import concurrent.futures

    def one(i):
        with smtplib.SMTP(postfix.host, postfix.port, timeout=60) as s:
            for j in range(5):
                s.sendmail("a@example.org", [f"p{i}-{j}@example.org"], MSG)
    with concurrent.futures.ThreadPoolExecutor(10) as ex:
        list(ex.map(one, range(10)))
    msgs = postfix.wait_for(50, timeout=60)
    assert len({m.rcpt_to for m in msgs}) == 50


@pytest.mark.parametrize("which", ["submission", "smtps"])
def test_auth_required_to_send(postfix, which):
    if which == "smtps":
        s = smtplib.SMTP_SSL(postfix.host, postfix.smtps_port, context=ctx(postfix), timeout=30)
    else:
        s = smtplib.SMTP(postfix.host, postfix.submission_port, timeout=30)
        s.starttls(context=ctx(postfix))
    with s:
        s.ehlo()
        code, msg = s.mail("a@example.org")
        assert (code, msg[:5]) == (530, b"5.7.0"), msg
        s.rset()
        s.login(postfix.user, postfix.password)
        assert s.mail("a@example.org")[0] == 250
        # scripted sender refusals still apply after AUTH
        s.rset()
        assert s.mail("sender-reject@example.org")[0] == 553


def test_auth_optional_on_auth_plain_port(postfix):
    with smtplib.SMTP(postfix.host, postfix.auth_plain_port, timeout=30) as s:
        s.sendmail("a@example.org", ["noauth@example.org"], MSG)
    postfix.wait_for(1)


def digest_md5_auth(s, user, password, realm, host):
    """Minimal RFC 2831 DIGEST-MD5 client (qop=auth)."""
    import re as _re
    code, resp = s.docmd("AUTH", "DIGEST-MD5")
    assert code == 334, resp
    chal = dict(_re.findall(r'(\w+)="?([^",]*)"?', base64.b64decode(resp).decode()))
    cnonce = base64.b64encode(os.urandom(12)).decode()
    uri = f"smtp/{host}"
    md5 = lambda b: hashlib.md5(b).digest()  # noqa: E731
    hexmd5 = lambda b: hashlib.md5(b).hexdigest()  # noqa: E731
    a1 = md5(f"{user}:{realm}:{password}".encode()) + f":{chal['nonce']}:{cnonce}".encode()
    a2 = f"AUTHENTICATE:{uri}".encode()
    rsp = hexmd5(f"{hexmd5(a1)}:{chal['nonce']}:00000001:{cnonce}:auth:{hexmd5(a2)}".encode())
    answer = (f'username="{user}",realm="{realm}",nonce="{chal["nonce"]}",cnonce="{cnonce}",'
              f'nc=00000001,qop=auth,digest-uri="{uri}",response={rsp},charset=utf-8')
    code, resp = s.docmd(base64.b64encode(answer.encode()).decode())
    if code == 334:  # rspauth
        code, resp = s.docmd("")
    return code, resp


def test_submission_digest_md5(postfix):
    with smtplib.SMTP(postfix.host, postfix.submission_port, timeout=30) as s:
        s.starttls(context=ctx(postfix))
        s.ehlo()
        code, resp = digest_md5_auth(s, "alice", postfix.password, postfix.realm, postfix.hostname)
        assert code == 235, resp
