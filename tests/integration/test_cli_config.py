"""The configuration file through the CLI: search order, accounts,
precedence (file < environment < flags), permission refusal for passwords,
parse errors with file and line."""
import json
import os
import subprocess


def base_env(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMTPC_")}
    env["HOME"] = str(tmp_path / "home")
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")
    (tmp_path / "home").mkdir(exist_ok=True)
    return env


def run(smtpc_bin, tmp_path, *args, env=None, input=None):
    return subprocess.run([smtpc_bin, *args], cwd=tmp_path, capture_output=True, timeout=30,
                          env=env if env is not None else base_env(tmp_path), input=input)


def write(path, text, mode=0o600):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.chmod(path, mode)
    return path


def send_json(smtpc_bin, tmp_path, *args, env=None):
    r = run(smtpc_bin, tmp_path, "send", "--to", "b@example.org", "--text", "x", "--json", *args, env=env)
    return r, (json.loads(r.stdout) if r.stdout else None)


def sender_of(tmp_path, o):
    return (tmp_path / o["path"]).read_bytes().split(b"\r\n", 1)[0]


CONF = """# test configuration
default = work
[account work]
from = work@example.org
delivery = pickup
pickup-dir = work-pickup
[account home]
from = me@home.example
match-from = *@family.example
pickup-dir = home-pickup
"""


def test_search_order(smtpc_bin, tmp_path):
    env = base_env(tmp_path)
    write(tmp_path / "etc-less" / "dummy", "")
    write(tmp_path / "home" / ".smtpcrc", "from = rc@example.org\n")
    r, o = send_json(smtpc_bin, tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    assert sender_of(tmp_path, o) == b"X-Sender: rc@example.org"
    write(tmp_path / "xdg" / "smtpc" / "config", "from = xdg@example.org\n")
    r, o = send_json(smtpc_bin, tmp_path, env=env)
    assert sender_of(tmp_path, o) == b"X-Sender: xdg@example.org"
    env["SMTPC_CONFIG"] = str(write(tmp_path / "explicit.conf", "from = env@example.org\n"))
    r, o = send_json(smtpc_bin, tmp_path, env=env)
    assert sender_of(tmp_path, o) == b"X-Sender: env@example.org"
    r, o = send_json(smtpc_bin, tmp_path, "--config", str(write(tmp_path / "flag.conf", "from = flag@example.org\n")), env=env)
    assert sender_of(tmp_path, o) == b"X-Sender: flag@example.org"
    # an explicit $SMTPC_CONFIG that does not exist is an error, not a fall-through
    env["SMTPC_CONFIG"] = str(tmp_path / "missing.conf")
    r, _ = send_json(smtpc_bin, tmp_path, env=env)
    assert r.returncode == 78 and b"missing.conf" in r.stderr


def test_accounts_default_and_by_name(smtpc_bin, tmp_path):
    cfg = str(write(tmp_path / "c.conf", CONF))
    r, o = send_json(smtpc_bin, tmp_path, "--config", cfg)
    assert r.returncode == 0, r.stderr
    assert o["path"].startswith("work-pickup/")
    assert sender_of(tmp_path, o) == b"X-Sender: work@example.org"
    r, o = send_json(smtpc_bin, tmp_path, "--config", cfg, "--account", "home")
    assert o["path"].startswith("home-pickup/")
    env = base_env(tmp_path)
    env["SMTPC_ACCOUNT"] = "home"
    r, o = send_json(smtpc_bin, tmp_path, "--config", cfg, env=env)
    assert o["path"].startswith("home-pickup/")
    r, _ = send_json(smtpc_bin, tmp_path, "--config", cfg, "--account", "nope")
    assert r.returncode == 78 and b'no account "nope"' in r.stderr


def test_precedence_file_env_flags(smtpc_bin, tmp_path):
    cfg = str(write(tmp_path / "c.conf", CONF))
    env = base_env(tmp_path)
    env["SMTPC_FROM"] = "env@example.org"
    env["SMTPC_PICKUP_DIR"] = "env-pickup"
    r, o = send_json(smtpc_bin, tmp_path, "--config", cfg, env=env)
    assert r.returncode == 0, r.stderr
    assert sender_of(tmp_path, o) == b"X-Sender: env@example.org"
    assert o["path"].startswith("env-pickup/")
    r, o = send_json(smtpc_bin, tmp_path, "--config", cfg, "--from", "flag@example.org",
                     "--pickup-dir", "flag-pickup", env=env)
    assert sender_of(tmp_path, o) == b"X-Sender: flag@example.org"
    assert o["path"].startswith("flag-pickup/")
    env["SMTPC_TLS"] = "sometimes"
    r, _ = send_json(smtpc_bin, tmp_path, "--config", cfg, env=env)
    assert r.returncode == 78 and b"SMTPC_TLS" in r.stderr


def test_password_file_permissions(smtpc_bin, tmp_path):
    p = write(tmp_path / "pw.conf", "[account a]\nfrom = a@example.org\npassword = s3cret\n", 0o644)
    r, _ = send_json(smtpc_bin, tmp_path, "--config", str(p))
    assert r.returncode == 78
    assert b"chmod 600" in r.stderr and b"group or others" in r.stderr
    assert b"s3cret" not in r.stderr
    os.chmod(p, 0o600)
    r, o = send_json(smtpc_bin, tmp_path, "--config", str(p))
    assert r.returncode == 0, r.stderr


def test_parse_errors_name_file_and_line(smtpc_bin, tmp_path):
    cases = {
        "from = a@example.org\n\nbogus-key = 1\n": b":3: unknown key \"bogus-key\"",
        "[account a]\ntls = maybe\n": b":2: tls:",
        "[account a]\nport = 0\n": b":2: port",
        "no equals sign\n": b":1: expected",
        "[account a]\n[account a]\n": b":2: account \"a\" defined twice",
        "default = x\n": b"default account \"x\" is not defined",
    }
    for text, needle in cases.items():
        p = write(tmp_path / "bad.conf", text)
        r, _ = send_json(smtpc_bin, tmp_path, "--config", str(p))
        assert r.returncode == 78, (text, r.stderr)
        assert needle in r.stderr and str(p).encode() in r.stderr, (text, r.stderr)


def test_delivery_smtp_from_config_needs_session(smtpc_bin, tmp_path):
    # server in the configuration selects SMTP delivery
    p = write(tmp_path / "s.conf", "from = a@example.org\nserver = 127.0.0.1:1\ntls = none\n")
    r, o = send_json(smtpc_bin, tmp_path, "--config", str(p))
    assert r.returncode in (69, 75), r.stderr
    assert not (tmp_path / "outbox").exists()
    # ... and the --pickup-dir flag overrides it
    r, o = send_json(smtpc_bin, tmp_path, "--config", str(p), "--pickup-dir", "pk")
    assert r.returncode == 0 and o["path"].startswith("pk/")


def test_config_command_shows_sources_never_secrets(smtpc_bin, tmp_path):
    p = write(tmp_path / "c.conf", "default = w\ntimeout = 30s\n[account w]\nserver = h.example:25\n"
                                   "from = me@example.org\n[account z]\npassword = s3cret-pw\n")
    env = base_env(tmp_path)
    env["SMTPC_TLS"] = "none"
    r = run(smtpc_bin, tmp_path, "config", "--config", str(p), "--user", "bob", env=env)
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert f"file: {p}\n" in out and "accounts: w (default) z\n" in out and "account: w\n" in out
    lines = {l.split()[0]: l for l in out.splitlines() if l.startswith("  ")}
    assert lines["server"].endswith(f"{p}:4") and "h.example:25" in lines["server"]
    assert lines["timeout"].endswith(f"{p}:2")
    assert lines["tls"].endswith("environment SMTPC_TLS")
    assert lines["user"].endswith("command line")
    assert "delivery: smtp" in out
    r = run(smtpc_bin, tmp_path, "config", "--config", str(p), "--account", "z", "--check-password")
    assert r.returncode == 0, r.stderr
    assert b"s3cret" not in r.stdout + r.stderr
    assert b"(set, not shown)" in r.stdout and b"password: ok (from password)" in r.stdout
    assert run(smtpc_bin, tmp_path, "config", "bogus").returncode == 64


def test_password_sources(smtpc_bin, tmp_path):
    cfg = str(write(tmp_path / "e.conf", ""))
    def check(*args, env=None):
        return run(smtpc_bin, tmp_path, "config", "--config", cfg, "--check-password", *args, env=env)
    r = check()
    assert r.returncode == 0 and b"password: none configured" in r.stdout
    env = base_env(tmp_path)
    env["MY_PW"] = "from-env"
    r = check("--password-env", "MY_PW", env=env)
    assert r.returncode == 0 and b"ok (from password-env)" in r.stdout and b"from-env" not in r.stdout
    r = check("--password-env", "UNSET_PW_VAR")
    assert r.returncode == 78 and b"UNSET_PW_VAR is not set" in r.stderr
    (tmp_path / "pw").write_text("file-secret\nsecond line\n")
    r = check("--password-file", str(tmp_path / "pw"))
    assert r.returncode == 0 and b"ok (from password-file)" in r.stdout
    r = check("--password-file", str(tmp_path / "missing"))
    assert r.returncode == 78
    r = check("--password-cmd", "echo cmd-$((40 + 2))")
    assert r.returncode == 0 and b"ok (from password-cmd)" in r.stdout and b"cmd-42" not in r.stdout
    r = check("--password-cmd", "exit 3")
    assert r.returncode == 78 and b"exit status 3" in r.stderr
    r = check("--password-cmd", "true")
    assert r.returncode == 78 and b"empty secret" in r.stderr
    # 75 (EX_TEMPFAIL) from the command: "not now" (a locked keyring), not a configuration error
    r = check("--password-cmd", "exit 75")
    assert r.returncode == 75 and b"exit status 75: try again later" in r.stderr
