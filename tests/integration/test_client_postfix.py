"""The client against the private Postfix: STARTTLS + AUTH on submission,
TLS and AUTH details in the result, a real queue id, one connection for
many messages (Postfix's log counts them), and the pool never mixing
identities."""
import re
import time

from servers.postfix import postfix, postfix_server  # noqa: F401
from client_servers import run, lines, kv


def connects(pf):
    """smtpd connections that sent commands (the fixture's port probes send none)."""
    log = pf.log()
    return (len(re.findall(r"smtpd\[\d+\]: connect from", log)) -
            len(re.findall(r"smtpd\[\d+\]: disconnect from \S+ commands=0/0", log)))


def test_starttls_auth_result_and_queue_id(postfix):
    before = connects(postfix)
    p = run(["--host", "localhost", "--port", str(postfix.submission_port), "--tls", "starttls",
             "--ca-file", postfix.ca_file, "--user", "alice", "--password", postfix.users["alice"],
             "--n", "3"])
    assert p.returncode == 0, p.stdout + p.stderr
    s = [kv(l) for l in lines(p, "send")]
    assert s[0]["tls"].startswith("TLSv1.") and s[0]["cipher"] != "-"
    assert s[0]["mech"].startswith("SCRAM") or s[0]["mech"] in ("CRAM-MD5", "PLAIN", "DIGEST-MD5")
    assert int(s[0]["tls_us"]) > 0 and int(s[0]["auth_us"]) > 0
    # Postfix: "250 2.0.0 Ok: queued as 4Fx..." -> the queue id
    assert all(re.fullmatch(r"[0-9A-Za-z]{6,}", x["queue"]) for x in s)
    assert [x["reused"] for x in s] == ["0", "1", "1"]
    assert s[1]["tls"] == s[0]["tls"]  # a re-used connection still reports its TLS
    postfix.wait_for(3)
    time.sleep(0.5)  # the log is written asynchronously
    # One connection: Postfix logs one "connect from" on the submission service.
    assert connects(postfix) - before == 1


def test_wrong_password_is_config_class(postfix):
    p = run(["--host", "localhost", "--port", str(postfix.submission_port), "--tls", "starttls",
             "--ca-file", postfix.ca_file, "--user", "alice", "--password", "wrong"])
    s = kv(lines(p, "send")[0])
    assert s["rc"] == "SMTPC_EAUTH" and s["attempts"] == "1"


# ---- identities from callbacks and the pool key ----

def sasl_users(pf):
    """The SASL user of each message Postfix queued, in log order."""
    # Cyrus appends the realm: "alice@smtpc.test".
    return [u.split("@")[0] for u in
            re.findall(r"smtpd\[\d+\]: \w+: client=\S+, sasl_method=\S+, sasl_username=(\S+)", pf.log())]


def submission(pf):
    return ["--host", "localhost", "--port", str(pf.submission_port), "--tls", "starttls",
            "--ca-file", pf.ca_file]


def wait_sasl(pf, before, n):
    deadline = time.monotonic() + 30
    while len(sasl_users(pf)) < before + n and time.monotonic() < deadline:
        time.sleep(0.1)
    return sasl_users(pf)[before:]


def test_identity_callback_different_users_never_share_a_connection(postfix):
    before = len(sasl_users(postfix))
    c0 = connects(postfix)
    p = run(submission(postfix) + ["--ident", "alice=" + postfix.users["alice"],
                                   "--ident", "bob=" + postfix.users["bob"], "--n", "4"])
    assert p.returncode == 0, p.stdout + p.stderr
    s = [kv(l) for l in lines(p, "send")]
    # alice (new), bob (new: another identity), alice and bob (each its own).
    assert [x["reused"] for x in s] == ["0", "0", "1", "1"]
    assert all(x["mech"] != "-" for x in s[:2])
    assert lines(p, "opened") == ["opened 2"]
    assert lines(p, "cbcalls") == ["cbcalls 4"]  # once per send
    # Postfix logs the SASL user of every message it queued.
    assert wait_sasl(postfix, before, 4) == ["alice", "bob", "alice", "bob"]
    postfix.wait_for(4)
    # Postfix logs a connect asynchronously: wait for both (a loaded
    # machine is slow), then make sure no third comes
    deadline = time.monotonic() + 20
    while connects(postfix) - c0 < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    assert connects(postfix) - c0 == 2


def test_identity_callback_same_user_reuses_one_connection(postfix):
    before = len(sasl_users(postfix))
    p = run(submission(postfix) + ["--ident", "alice=" + postfix.users["alice"], "--n", "3"])
    assert p.returncode == 0, p.stdout + p.stderr
    assert [kv(l)["reused"] for l in lines(p, "send")] == ["0", "1", "1"]
    assert lines(p, "opened") == ["opened 1"] and lines(p, "cbcalls") == ["cbcalls 3"]
    assert wait_sasl(postfix, before, 3) == ["alice"] * 3


def test_credential_callback_password_is_part_of_the_key(postfix):
    # The same user with another password must not ride on the connection
    # that authenticated with the first one: it gets its own AUTH (refused).
    p = run(submission(postfix) + ["--user", "alice", "--cred-cb-pass", postfix.users["alice"],
                                   "--cred-cb-pass", "not-alices-password", "--n", "3"])
    s = [kv(l) for l in lines(p, "send")]
    assert [x["rc"] for x in s] == ["SMTPC_OK", "SMTPC_EAUTH", "SMTPC_OK"], p.stdout
    assert [x["reused"] for x in s] == ["0", "0", "1"]
    assert lines(p, "cbcalls") == ["cbcalls 3"]
