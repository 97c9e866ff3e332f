"""msmtp users switch in one line: smtpc reads an msmtp file (found as
~/.msmtprc, or given with --config) and `smtpc sendmail -t` behaves as
`msmtp -t` with it: same envelope, same server, same TLS. msmtp itself (Debian's
package) is run as the reference against the same Postfix; Debian's example
files convert with `smtpc config import-msmtp`."""
import gzip
import os
import pathlib
import re
import shutil
import subprocess

import pytest

from servers.postfix import postfix, postfix_server  # noqa: F401

MSMTP = shutil.which("msmtp")
EXAMPLES = pathlib.Path("/usr/share/doc/msmtp/examples")
need_msmtp = pytest.mark.skipif(not MSMTP, reason="msmtp not installed (scripts/deps/msmtp.txt)")

MESSAGE = (b"From: Header Person <header@example.org>\n"
           b"To: to1@example.net, Two <to2@example.net>\n"
           b"Cc: cc1@example.net\n"
           b"Bcc: bcc1@example.net\n"
           b"Subject: msmtp compatibility\n"
           b"\n"
           b"body line\n")


def msmtp_file(tmp_path, pf):
    """Hand-written: defaults, inheritance, account default, plain, STARTTLS
    and implicit TLS with AUTH, passwordeval and password."""
    return f"""# msmtp configuration for the tests
defaults
tls_trust_file {pf.ca_file}
timeout 60
logfile {tmp_path}/msmtp.log

account plain
host 127.0.0.1
port {pf.port}
from plain-sender@example.org

account submission
host localhost
port {pf.submission_port}
tls on
tls_starttls on
auth plain
user alice
passwordeval echo alice-secret
from alice@example.org

account smtps : submission
port {pf.smtps_port}
tls_starttls off
auth on
from smtps-sender@example.org

account lax
host 127.0.0.1
port {pf.starttls_ports["self_signed"]}
tls on
tls_certcheck off
from lax@example.org

account default : submission
from default-sender@example.org
"""


def home_env(tmp_path, smtpc_bin):
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMTPC_")}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(tmp_path / "xdg"))
    return env


def write_rc(path, text, mode=0o600):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.chmod(path, mode)
    return path


def tls_of(m):
    """The TLS version Postfix saw, from its Received header ("" = none)."""
    got = re.search(r"\(using (TLSv[0-9.]+)", m.received)
    return got.group(1) if got else ""


def summary(msgs):
    """What must be the same: envelope, TLS, and Bcc removed from the header."""
    out = set()
    for m in msgs:
        body = m.original
        assert b"\nBcc:" not in body and not body.startswith(b"Bcc:")
        assert b"body line" in body
        out.add((m.mail_from, m.rcpt_to, tls_of(m)))
    return out


def deliveries(pf, run):
    pf.clear()
    r = run()
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    msgs = pf.wait_for(4)  # to1, to2, cc1, bcc1
    got = summary(msgs)
    pf.clear()
    return got, r


@need_msmtp
@pytest.mark.parametrize("account", ["plain", "submission", "smtps", None])
def test_sendmail_t_does_what_msmtp_t_does(smtpc_bin, tmp_path, postfix, account):
    env = home_env(tmp_path, smtpc_bin)
    rc = write_rc(tmp_path / "home" / ".msmtprc", msmtp_file(tmp_path, postfix))
    sel = ["-a", account] if account else []
    ref, _ = deliveries(postfix, lambda: subprocess.run(
        [MSMTP, *sel, "-t"], input=MESSAGE, capture_output=True, env=env, timeout=120))
    # smtpc finds ~/.msmtprc by itself: no smtpc configuration exists
    mine, r = deliveries(postfix, lambda: subprocess.run(
        [smtpc_bin, "sendmail", *(["--account", account] if account else []), "-t"],
        input=MESSAGE, capture_output=True, env=env, timeout=120))
    assert mine == ref
    assert {x[1] for x in mine} == {"to1@example.net", "to2@example.net", "cc1@example.net",
                                    "bcc1@example.net"}
    sender = {"plain": "plain-sender@example.org", "submission": "alice@example.org",
              "smtps": "smtps-sender@example.org", None: "default-sender@example.org"}[account]
    assert {x[0] for x in mine} == {sender}
    assert {x[2] for x in mine} == ({""} if account == "plain" else {"TLSv1.3"})
    assert b"logfile: smtpc writes no log file" in r.stderr  # named, not silently ignored
    # --config FILE pointing at the same file, elsewhere: the same
    other = write_rc(tmp_path / "elsewhere.conf", rc.read_text())
    again, _ = deliveries(postfix, lambda: subprocess.run(
        [smtpc_bin, "sendmail", "--config", str(other), *(["--account", account] if account else []), "-t"],
        input=MESSAGE, capture_output=True, env=dict(env, HOME=str(tmp_path)), timeout=120))
    assert again == ref


@need_msmtp
def test_tls_certcheck_off_is_honoured_with_a_loud_warning(smtpc_bin, tmp_path, postfix):
    env = home_env(tmp_path, smtpc_bin)
    write_rc(tmp_path / "home" / ".msmtprc", msmtp_file(tmp_path, postfix))
    ref, _ = deliveries(postfix, lambda: subprocess.run(
        [MSMTP, "-a", "lax", "-t"], input=MESSAGE, capture_output=True, env=env, timeout=120))
    mine, r = deliveries(postfix, lambda: subprocess.run(
        [smtpc_bin, "sendmail", "--account", "lax", "-t"], input=MESSAGE, capture_output=True,
        env=env, timeout=120))
    assert mine == ref
    err = r.stderr.decode()
    assert "tls_certcheck off: the server's certificate is NOT verified" in err
    assert "--insecure: the server's certificate is NOT verified" in err


def test_an_smtpc_file_wins_over_msmtprc(smtpc_bin, tmp_path):
    env = home_env(tmp_path, smtpc_bin)
    write_rc(tmp_path / "home" / ".msmtprc", "account default\nhost msmtp.example\n")
    r = subprocess.run([smtpc_bin, "config"], capture_output=True, text=True, env=env, timeout=30)
    assert r.returncode == 0, r.stderr
    assert "(msmtp)" in r.stdout and "msmtp.example" in r.stdout
    write_rc(tmp_path / "home" / ".smtpcrc", "server = smtpc.example\n")
    r = subprocess.run([smtpc_bin, "config"], capture_output=True, text=True, env=env, timeout=30)
    assert "smtpc.example" in r.stdout and "msmtp.example" not in r.stdout


def test_permission_rules_apply_to_msmtprc(smtpc_bin, tmp_path):
    env = home_env(tmp_path, smtpc_bin)
    rc = write_rc(tmp_path / "home" / ".msmtprc",
                  "account default\nhost h.example\nauth on\nuser u\npassword s3cret\n", mode=0o644)
    r = subprocess.run([smtpc_bin, "sendmail", "-t"], input=MESSAGE, capture_output=True, env=env, timeout=30)
    assert r.returncode == 78
    assert b".msmtprc:5: password in a file accessible by group or others" in r.stderr
    assert b"s3cret" not in r.stderr
    os.chmod(rc, 0o622)
    r = subprocess.run([smtpc_bin, "config"], capture_output=True, env=env, timeout=30)
    assert r.returncode == 78 and b"writable by group or others" in r.stderr


def test_refusals_name_file_and_line(smtpc_bin, tmp_path):
    env = home_env(tmp_path, smtpc_bin)
    rc = write_rc(tmp_path / "fp.rc", "account default\nhost h.example\ntls on\n"
                  "tls_fingerprint SHA256:00:11:22\n")
    r = subprocess.run([smtpc_bin, "sendmail", "--config", str(rc), "-t"], input=MESSAGE,
                       capture_output=True, env=env, timeout=30)
    assert r.returncode == 78
    assert f"{rc}:4: account default: tls_fingerprint".encode() in r.stderr
    assert b"pin" in r.stderr


def test_import_msmtp_prints_an_equivalent_configuration(smtpc_bin, tmp_path, postfix):
    env = home_env(tmp_path, smtpc_bin)
    write_rc(tmp_path / "home" / ".msmtprc", msmtp_file(tmp_path, postfix))
    r = subprocess.run([smtpc_bin, "config", "import-msmtp"], capture_output=True, text=True,
                       env=env, timeout=30)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "default = default\n" in out
    assert "[account smtps]\nserver = localhost\nport = %d\ntls = implicit\n" % postfix.smtps_port in out
    assert "password-cmd = echo alice-secret\n" in out
    assert "# warning: " in out and "tls_certcheck off" in out
    conv = write_rc(tmp_path / "converted.conf", out)
    # the converted file is smtpc's syntax and sends the same way
    chk = subprocess.run([smtpc_bin, "config", "--config", str(conv), "--account", "smtps"],
                         capture_output=True, text=True, env=env, timeout=30)
    assert chk.returncode == 0 and "(msmtp)" not in chk.stdout, chk.stderr
    a, _ = deliveries(postfix, lambda: subprocess.run(
        [smtpc_bin, "sendmail", "--account", "smtps", "-t"], input=MESSAGE, capture_output=True,
        env=env, timeout=120))
    b, _ = deliveries(postfix, lambda: subprocess.run(
        [smtpc_bin, "sendmail", "--config", str(conv), "--account", "smtps", "-t"], input=MESSAGE,
        capture_output=True, env=env, timeout=120))
    assert a == b
    # an smtpc file is not an msmtp file
    r = subprocess.run([smtpc_bin, "config", "import-msmtp", str(conv)], capture_output=True,
                       text=True, env=env, timeout=30)
    assert r.returncode == 78 and "not an msmtp configuration file" in r.stderr


def debian_example(tmp_path, name):
    for p in (EXAMPLES / name, EXAMPLES / (name + ".gz")):
        if p.exists():
            data = gzip.decompress(p.read_bytes()) if p.suffix == ".gz" else p.read_bytes()
            return write_rc(tmp_path / name, data.decode())
    pytest.skip(f"{name} not installed (Debian's msmtp package)")


def test_debian_user_example(smtpc_bin, tmp_path):
    env = home_env(tmp_path, smtpc_bin)
    f = debian_example(tmp_path, "msmtprc-user.example")
    r = subprocess.run([smtpc_bin, "config", "import-msmtp", str(f)], capture_output=True,
                       text=True, env=env, timeout=30)
    assert r.returncode == 0, r.stderr
    accts = re.findall(r"^\[account (\S+)\]$", r.stdout, re.M)
    assert accts == ["freemail", "freemail2", "company", "default"]
    blocks = dict(re.findall(r"^\[account (\S+)\]\n(.*?)(?=\n\[|\Z)", r.stdout, re.M | re.S))
    # defaults (port 587, tls on, tls_starttls on) filled in; freemail2 inherits
    assert "server = smtp.freemail.example\nport = 587\ntls = starttls\n" in blocks["freemail2"]
    assert "from = joey@freemail.example" in blocks["freemail2"]
    assert "password-cmd = gpg2 --no-tty -q -d ~/.msmtp-password.gpg" in blocks["freemail2"]
    assert blocks["default"] == blocks["freemail"]  # account default : freemail
    c = subprocess.run([smtpc_bin, "config", "--config", str(f)], capture_output=True, text=True,
                       env=env, timeout=30)
    assert c.returncode == 0, c.stderr
    assert "accounts: freemail freemail2 company default (default)" in c.stdout


def test_debian_system_example(smtpc_bin, tmp_path):
    env = home_env(tmp_path, smtpc_bin)
    f = debian_example(tmp_path, "msmtprc-system.example")
    r = subprocess.run([smtpc_bin, "config", "import-msmtp", str(f)], capture_output=True,
                       text=True, env=env, timeout=30)
    assert r.returncode == 0, r.stderr
    assert "server = mail.oursite.example\nport = 465\ntls = implicit\n" in r.stdout
    import pwd
    assert f"from = {pwd.getpwuid(os.geteuid()).pw_name}@oursite.example" in r.stdout  # %U
    for key in ("syslog", "allow_from_override", "set_from_header on"):
        assert key in r.stderr  # each named in a warning


@need_msmtp
def test_dsn_notify_and_return_are_requested_as_msmtp_does(smtpc_bin, tmp_path, postfix):
    """dsn_notify success: Postfix then delivers a success DSN to the sender,
    into the same Maildir, for msmtp and for smtpc alike."""
    env = home_env(tmp_path, smtpc_bin)
    write_rc(tmp_path / "home" / ".msmtprc",
             f"account default\nhost 127.0.0.1\nport {postfix.port}\nfrom dsn@example.org\n"
             f"dsn_notify success\ndsn_return headers\n")
    msg = b"From: dsn@example.org\nTo: one@example.net\nSubject: dsn\n\nbody line\n"
    kinds = []
    for cmd in ([MSMTP, "-t"], [smtpc_bin, "sendmail", "-t"]):
        postfix.clear()
        r = subprocess.run(cmd, input=msg, capture_output=True, env=env, timeout=120)
        assert r.returncode == 0, r.stderr
        msgs = postfix.wait_for(2)  # the message and the success DSN
        kinds.append(sorted((m.rcpt_to, b"delivery-status" in m.raw.lower()) for m in msgs))
    assert kinds[0] == kinds[1] == [("dsn@example.org", True), ("one@example.net", False)]
