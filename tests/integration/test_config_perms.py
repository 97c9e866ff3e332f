"""The configuration file's permission rules end to end through the CLI: a
file others can write is refused whatever it holds, and any key that holds or
obtains a credential (not only a literal password) needs a private file. The
refusal names the file and the rule, and exits 78 (EX_CONFIG)."""
import json
import os
import subprocess

BASE = "from = a@example.org\ndelivery = pickup\npickup-dir = out\n"


def send(smtpc_bin, tmp_path, conf):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMTPC_")}
    env["HOME"] = str(tmp_path)
    return subprocess.run([smtpc_bin, "send", "--config", str(conf), "--to", "b@example.org",
                           "--text", "x", "--json"], cwd=tmp_path, capture_output=True,
                          timeout=30, env=env)


def write(path, text, mode):
    path.write_text(text)
    os.chmod(path, mode)
    return path


def test_writable_by_others_is_refused(smtpc_bin, tmp_path):
    conf = write(tmp_path / "c.conf", BASE, 0o666)
    r = send(smtpc_bin, tmp_path, conf)
    assert r.returncode == 78, r
    assert str(conf).encode() in r.stderr and b"writable by group or others" in r.stderr
    assert b"chmod go-w" in r.stderr
    assert not (tmp_path / "out").exists()
    os.chmod(conf, 0o644)
    r = send(smtpc_bin, tmp_path, conf)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["path"].startswith("out/")


def test_command_keys_need_a_private_file(smtpc_bin, tmp_path):
    conf = write(tmp_path / "c.conf", BASE + "user = a\npassword-cmd = touch ran\n", 0o644)
    r = send(smtpc_bin, tmp_path, conf)
    assert r.returncode == 78, r
    assert f"{conf}:5: password-cmd".encode() in r.stderr and b"chmod 600" in r.stderr
    assert not (tmp_path / "ran").exists()
    os.chmod(conf, 0o600)
    r = send(smtpc_bin, tmp_path, conf)
    assert r.returncode == 0, r.stderr
