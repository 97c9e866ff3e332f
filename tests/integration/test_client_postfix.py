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
