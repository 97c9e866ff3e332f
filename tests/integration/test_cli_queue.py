"""smtpc send --outbox DIR queues; smtpc queue list|flush|retry|drop."""
import json
import os
import subprocess

from client_servers import counting  # noqa: F401


def clean_env(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMTPC_")}
    env["HOME"] = str(tmp_path)
    env["SMTPC_CONFIG"] = "/dev/null"
    return env


def smtpc(smtpc_bin, tmp_path, *args):
    return subprocess.run([smtpc_bin, *args], cwd=tmp_path, capture_output=True, timeout=60,
                          env=clean_env(tmp_path), text=True)


def test_send_outbox_then_flush(smtpc_bin, tmp_path, counting):
    r = smtpc(smtpc_bin, tmp_path, "send", "--from", "a@example.org", "--to", "b@example.org",
              "--subject", "queued", "--text", "later", "--outbox", "ob", "--count", "3")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("written to outbox directory: ob/queue/") == 3
    r = smtpc(smtpc_bin, tmp_path, "queue", "list", "--outbox", "ob", "--json")
    entries = [json.loads(l) for l in r.stdout.splitlines()]
    assert len(entries) == 3 and all(e["attempts"] == 0 and not e["failed"] for e in entries)
    srv = counting()
    r = smtpc(smtpc_bin, tmp_path, "queue", "flush", "--outbox", "ob", "--server", f"127.0.0.1:{srv.port}",
              "--tls", "none")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "sent 3, deferred 0, failed 0, not due 0\n"
    assert len(set(srv.msgids)) == 3 and srv.connections == 1
    assert smtpc(smtpc_bin, tmp_path, "queue", "list", "--outbox", "ob").stdout == ""


def test_failed_retry_drop(smtpc_bin, tmp_path, counting):
    for to in ("bad@example.org", "good@example.org"):
        r = smtpc(smtpc_bin, tmp_path, "send", "--from", "a@example.org", "--to", to, "--text", "x",
                  "--outbox", "ob")
        assert r.returncode == 0, r.stderr
    srv = counting(refuse={"bad@example.org"})
    r = smtpc(smtpc_bin, tmp_path, "queue", "flush", "--outbox", "ob", "--server", f"127.0.0.1:{srv.port}",
              "--tls", "none", "--json")
    assert json.loads(r.stdout) == {"ok": False, "sent": 1, "deferred": 0, "failed": 1, "not_due": 0}
    assert r.returncode == 69
    r = smtpc(smtpc_bin, tmp_path, "queue", "list", "--outbox", "ob", "--json")
    [e] = [json.loads(l) for l in r.stdout.splitlines()]
    assert e["failed"] and "550" in e["last_error"]
    assert smtpc(smtpc_bin, tmp_path, "queue", "retry", e["id"], "--outbox", "ob").returncode == 0
    [e2] = [json.loads(l) for l in smtpc(smtpc_bin, tmp_path, "queue", "list", "--outbox", "ob",
                                          "--json").stdout.splitlines()]
    assert not e2["failed"] and e2["id"] == e["id"]
    assert smtpc(smtpc_bin, tmp_path, "queue", "drop", e["id"], "--outbox", "ob").returncode == 0
    assert smtpc(smtpc_bin, tmp_path, "queue", "list", "--outbox", "ob").stdout == ""
    r = smtpc(smtpc_bin, tmp_path, "queue", "drop", e["id"], "--outbox", "ob")
    assert r.returncode == 65 and "no outbox entry" in r.stderr


def test_usage(smtpc_bin, tmp_path):
    assert smtpc(smtpc_bin, tmp_path, "queue", "frob", "--outbox", "ob").returncode == 64
    assert smtpc(smtpc_bin, tmp_path, "queue", "drop", "--outbox", "ob").returncode == 64
    r = smtpc(smtpc_bin, tmp_path, "queue", "list")
    assert r.returncode == 64 and "--outbox" in r.stderr


def test_connections_option(smtpc_bin, tmp_path, counting):
    r = smtpc(smtpc_bin, tmp_path, "queue", "--help")
    assert r.returncode == 0 and "--connections K" in r.stdout
    for bad in ("0", "101", "x", "-1"):
        r = smtpc(smtpc_bin, tmp_path, "queue", "flush", "--outbox", "ob", "--server", "127.0.0.1:1",
                  "--tls", "none", "--connections", bad)
        assert r.returncode == 64 and "--connections" in r.stderr, (bad, r.stderr)
    # only flush takes it
    assert smtpc(smtpc_bin, tmp_path, "queue", "list", "--outbox", "ob", "--connections", "2").returncode == 64
    r = smtpc(smtpc_bin, tmp_path, "send", "--from", "a@example.org", "--to", "b@example.org", "--text", "x",
              "--outbox", "ob", "--count", "20")
    assert r.returncode == 0, r.stderr
    srv = counting()
    r = smtpc(smtpc_bin, tmp_path, "queue", "flush", "--outbox", "ob", "--server", f"127.0.0.1:{srv.port}",
              "--tls", "none", "--connections", "3", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"ok": True, "sent": 20, "deferred": 0, "failed": 0, "not_due": 0}
    assert len(set(srv.msgids)) == 20 == len(srv.msgids)
    assert 1 <= srv.connections <= 3


def test_flush_takes_the_connection_flags(smtpc_bin, tmp_path, counting):
    # --proxy, -6 and --bind's port reach the flush's clients (they were
    # accepted and ignored): each one, wrong, keeps the message queued.
    r = smtpc(smtpc_bin, tmp_path, "send", "--from", "a@example.org", "--to", "b@example.org",
              "--text", "x", "--outbox", "ob")
    assert r.returncode == 0, r.stderr
    srv = counting()
    base = ["queue", "flush", "--outbox", "ob", "--server", f"127.0.0.1:{srv.port}", "--tls", "none",
            "--json", "--connect-timeout", "10s"]
    # (the bind port is the server's own, where it listens: in use)
    for wrong in (["--proxy", "socks5://127.0.0.1:1"], ["-6"], ["--bind", f"127.0.0.1:{srv.port}"]):
        r = smtpc(smtpc_bin, tmp_path, *base, *wrong)
        assert json.loads(r.stdout)["deferred"] == 1, (wrong, r.stdout, r.stderr)
        assert smtpc(smtpc_bin, tmp_path, "queue", "retry", "--outbox", "ob").returncode == 0  # due now
    assert srv.msgids == [] and srv.connections == 0
    r = smtpc(smtpc_bin, tmp_path, *base, "-4", "--bind", "127.0.0.1")
    assert json.loads(r.stdout)["sent"] == 1, r.stdout + r.stderr
    assert len(srv.msgids) == 1
