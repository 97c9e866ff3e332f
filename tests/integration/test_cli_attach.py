"""--attach FILE[;name=NAME][;type=TYPE] and --inline FILE[;cid=ID][;type=TYPE]:
the MIME output (--dump) read back with Python's email package."""
import email
import email.policy
import os
import subprocess


def env_for(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMTPC_")}
    env.update(HOME=str(tmp_path), SMTPC_CONFIG="/dev/null")
    return env


def dump(smtpc_bin, tmp_path, *args):
    r = subprocess.run([smtpc_bin, "send", "--from", "a@example.org", "--to", "b@example.org", "--subject", "s",
                        "--dump", *args], cwd=tmp_path, capture_output=True, timeout=60, env=env_for(tmp_path))
    return r, (email.message_from_bytes(r.stdout, policy=email.policy.default) if r.returncode == 0 else None)


def test_attach_name_and_type(smtpc_bin, tmp_path):
    (tmp_path / "r.pdf").write_bytes(b"%PDF pretend\n")
    r, m = dump(smtpc_bin, tmp_path, "--text", "see attached", "--attach", "r.pdf;name=Report Q3.pdf;type=application/x-test",
                "--attach", "r.pdf")
    assert r.returncode == 0, r.stderr
    att = list(m.iter_attachments())
    assert [(a.get_filename(), a.get_content_type()) for a in att] == [
        ("Report Q3.pdf", "application/x-test"), ("r.pdf", "application/pdf")]
    assert att[0].get_content() == b"%PDF pretend\n"


def test_file_names_with_semicolons(smtpc_bin, tmp_path):
    # an existing file is taken whole; otherwise only name=/type= pieces are parameters
    (tmp_path / "odd;name=x.txt").write_bytes(b"one")
    (tmp_path / "semi;colon.txt").write_bytes(b"two")
    r, m = dump(smtpc_bin, tmp_path, "--text", "t", "--attach", "odd;name=x.txt", "--attach", "semi;colon.txt",
                "--attach", "semi;colon.txt;type=text/x-two")
    assert r.returncode == 0, r.stderr
    att = list(m.iter_attachments())
    assert [(a.get_filename(), a.get_content()) for a in att][:2] == [("odd;name=x.txt", "one"),
                                                                        ("semi;colon.txt", "two")]
    assert att[2].get_filename() == "semi;colon.txt" and att[2].get_content_type() == "text/x-two"


def test_inline_cid(smtpc_bin, tmp_path):
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(64))
    (tmp_path / "logo.png").write_bytes(png)
    r, m = dump(smtpc_bin, tmp_path, "--html", '<img src="cid:brand-logo">', "--inline", "logo.png;cid=brand-logo",
                "--inline", "logo.png")
    assert r.returncode == 0, r.stderr
    parts = [p for p in m.walk() if p.get_content_type() == "image/png"]
    assert [p["Content-ID"] for p in parts] == ["<brand-logo>", "<logo.png>"]
    assert all(p.get_content_disposition() == "inline" and p.get_content() == png for p in parts)


def test_missing_file_is_named(smtpc_bin, tmp_path):
    r, _ = dump(smtpc_bin, tmp_path, "--text", "t", "--attach", "nope.pdf;name=a.pdf")
    assert r.returncode == 66 and b"nope.pdf" in r.stderr, r.stderr
