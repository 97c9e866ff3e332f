"""The CLI's pickup-directory delivery (the default when no server is set)."""
import email
import email.policy
import os
import pathlib
import subprocess


def run(smtpc_bin, *args, cwd=None, input=None):
    # no user configuration or SMTPC_* variables: the default must be the pickup directory
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMTPC_")}
    env["SMTPC_CONFIG"] = "/dev/null"
    return subprocess.run([smtpc_bin, *args], cwd=cwd, input=input, capture_output=True, timeout=30,
                          env=env)


def test_default_is_pickup_dir(smtpc_bin, tmp_path):
    r = run(smtpc_bin, "send", "--from", "a@example.org", "--to", "b@example.org",
            "--to", "c@example.org", "--subject", "hi", "--text", "hello", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    files = list((tmp_path / "outbox").glob("*.eml"))
    assert len(files) == 1
    assert str(files[0].name) in r.stdout.decode()
    raw = files[0].read_bytes()
    assert raw.startswith(b"X-Sender: a@example.org\r\nX-Receiver: b@example.org\r\nX-Receiver: c@example.org\r\n")
    assert b"\n" not in raw.replace(b"\r\n", b"")  # CRLF only
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["Subject"] == "hi"
    assert msg.get_content().strip() == "hello"
    # no temporary file left behind
    assert not list((tmp_path / "outbox").glob(".tmp-*"))


def test_pickup_dir_option_and_unique_names(smtpc_bin, tmp_path):
    d = tmp_path / "deep" / "pickup"
    for _ in range(5):
        r = run(smtpc_bin, "send", "--from", "a@example.org", "--to", "b@example.org",
                "--text", "x", "--pickup-dir", str(d))
        assert r.returncode == 0, r.stderr
    assert len(list(d.glob("*.eml"))) == 5


def test_message_file_line_ends_normalised(smtpc_bin, tmp_path):
    m = tmp_path / "m.eml"
    m.write_bytes(b"Subject: raw\nFrom: a@example.org\n\nline1\rline2\r\nline3\n")
    r = run(smtpc_bin, "send", "--from", "a@example.org", "--to", "b@example.org",
            "--message", str(m), "--pickup-dir", str(tmp_path / "p"))
    assert r.returncode == 0, r.stderr
    raw = next((tmp_path / "p").glob("*.eml")).read_bytes()
    assert raw.endswith(b"Subject: raw\r\nFrom: a@example.org\r\n\r\nline1\r\nline2\r\nline3\r\n")


def test_header_injection_refused(smtpc_bin, tmp_path):
    r = run(smtpc_bin, "send", "--from", "a@example.org", "--to", "b@example.org",
            "--subject", "hi\r\nBcc: evil@example.org", "--text", "x", cwd=tmp_path)
    assert r.returncode == 65
    assert not (tmp_path / "outbox").exists() or not list((tmp_path / "outbox").glob("*.eml"))


def test_usage_errors(smtpc_bin, tmp_path):
    assert run(smtpc_bin, "send", "--to", "b@example.org", cwd=tmp_path).returncode == 64
    assert run(smtpc_bin, "bogus", cwd=tmp_path).returncode == 64
    r = run(smtpc_bin, "send", "--from", "a@example.org", "--to", "b@example.org",
            "--text-file", str(tmp_path / "missing"), cwd=tmp_path)
    assert r.returncode == 66
