"""TLS modes and AUTH through `smtpc send` / `smtpc probe` against the private
Postfix (servers/postfix.py): STARTTLS on submission with every mechanism it
offers, implicit TLS on smtps, auto mode finding the mode on each port (timed),
wrong passwords, the certificate matrix, pins, probe output, and that the
password never appears in any output or trace."""
import json
import os
import subprocess
import time

import pytest

from servers.postfix import postfix, postfix_server  # noqa: F401

FROM = "sender@example.org"


def env_for(tmp_path, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMTPC_")}
    env["HOME"] = str(tmp_path)
    env["SMTPC_CONFIG"] = "/dev/null"
    env.update(extra)
    return env


def smtpc(smtpc_bin, tmp_path, *args, password=None, timeout=120):
    env = env_for(tmp_path, PW=password) if password is not None else env_for(tmp_path)
    return subprocess.run([smtpc_bin, *args], cwd=tmp_path, capture_output=True, timeout=timeout,
                          env=env)


def send(smtpc_bin, tmp_path, pf, port, *args, to="rcpt@example.net", password=None, user="alice",
         ca=True):
    extra = ["--ca-file", pf.ca_file] if ca else []
    if user:
        extra += ["--user", user, "--password-env", "PW"]
        if password is None:
            password = pf.users[user]
    return smtpc(smtpc_bin, tmp_path, "send", "--server", f"localhost:{port}", "--from", FROM,
                 "--to", to, "--subject", "tls test", "--text", "hello over tls", *extra, *args,
                 password=password)


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256"])
def test_starttls_submission_each_mechanism(smtpc_bin, tmp_path, postfix, mech):
    r = send(smtpc_bin, tmp_path, postfix, postfix.submission_port, "--tls", "starttls",
             "--auth", mech, "--json", to=f"{mech.lower()}@example.net")
    assert r.returncode == 0, r.stderr
    o = json.loads(r.stdout)
    assert o["ok"] and o["tls"]["mode"] == "starttls" and o["auth"] == mech
    [m] = postfix.wait_for(1)
    assert m.rcpt_to == f"{mech.lower()}@example.net" and m.mail_from == FROM
    # Postfix's Received header records the TLS session and the authenticated user
    rec = m.received
    assert "TLS" in str(rec)
    assert b"hello over tls" in m.original


def test_default_mechanism_is_the_strongest(smtpc_bin, tmp_path, postfix):
    r = send(smtpc_bin, tmp_path, postfix, postfix.submission_port, "--json")
    assert r.returncode == 0, r.stderr
    o = json.loads(r.stdout)
    # no --tls, port not 465 and credentials: STARTTLS required; SCRAM-SHA-256 chosen
    assert o["tls"]["mode"] == "starttls" and o["auth"] == "SCRAM-SHA-256"
    postfix.wait_for(1)


def test_special_password_and_login_with_domain(smtpc_bin, tmp_path, postfix):
    for user in ("bob", "carol@example.org"):
        r = send(smtpc_bin, tmp_path, postfix, postfix.submission_port, "--auth", "PLAIN", user=user)
        assert r.returncode == 0, (user, r.stderr)
    postfix.wait_for(2)


def test_implicit_tls_on_smtps(smtpc_bin, tmp_path, postfix):
    r = send(smtpc_bin, tmp_path, postfix, postfix.smtps_port, "--tls", "implicit", "--json")
    assert r.returncode == 0, r.stderr
    o = json.loads(r.stdout)
    assert o["tls"]["mode"] == "tls" and o["auth"] == "SCRAM-SHA-256"
    [m] = postfix.wait_for(1)
    assert m.rcpt_to == "rcpt@example.net"


@pytest.mark.parametrize("which,expect", [("smtps_port", "tls"), ("submission_port", "starttls")])
def test_auto_finds_the_mode_quickly(smtpc_bin, tmp_path, postfix, which, expect):
    port = getattr(postfix, which)
    t0 = time.monotonic()
    r = send(smtpc_bin, tmp_path, postfix, port, "--tls", "auto", "--json")
    took = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["tls"]["mode"] == expect
    postfix.wait_for(1)
    print(f"auto on {which}: {took:.2f} s")
    # both orders end fast: a plaintext server answers the ClientHello with
    # its greeting (the handshake fails at once)
    assert took < 4.5, took


def test_auto_on_implicit_port_with_plaintext_first_would_wait(smtpc_bin, tmp_path, postfix):
    # the greeting timeout bounds a plaintext attempt on an implicit-TLS port:
    # --tls starttls there fails after --greeting-timeout, not after 60 s
    t0 = time.monotonic()
    r = send(smtpc_bin, tmp_path, postfix, postfix.smtps_port, "--tls", "starttls",
             "--greeting-timeout", "1s")
    took = time.monotonic() - t0
    assert r.returncode == 75, r.stderr
    assert b"greeting timed out" in r.stderr
    assert took < 10


def test_wrong_password_exit_77(smtpc_bin, tmp_path, postfix):
    secret = "definitely-wrong-Pa55"
    r = send(smtpc_bin, tmp_path, postfix, postfix.submission_port, "--json", password=secret)
    assert r.returncode == 77, r.stderr
    o = json.loads(r.stdout)
    assert o["error"]["class"] and "535" in o["error"]["message"]
    assert secret.encode() not in r.stdout + r.stderr


def test_auth_required_without_tls_refused_before_credentials(smtpc_bin, tmp_path, postfix):
    # auth_plain_port offers AUTH in cleartext: no credentials without --allow-plaintext-auth
    r = send(smtpc_bin, tmp_path, postfix, postfix.auth_plain_port, "--tls", "starttls-optional",
             "--trace")
    assert r.returncode == 76, r.stderr
    assert b"does not offer STARTTLS" in r.stderr
    assert b"C: AUTH" not in r.stderr and b"C: MAIL" not in r.stderr
    r = send(smtpc_bin, tmp_path, postfix, postfix.auth_plain_port, "--tls", "none", "--trace")
    assert r.returncode == 77, r.stderr
    assert b"unencrypted" in r.stderr and b"C: AUTH" not in r.stderr
    # explicitly allowed: works (PLAIN allowed in the clear only when asked)
    r = send(smtpc_bin, tmp_path, postfix, postfix.auth_plain_port, "--tls", "none",
             "--allow-plaintext-auth", "--auth", "CRAM-MD5", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["auth"] == "CRAM-MD5"
    postfix.wait_for(1)


def test_password_never_in_output_or_trace(smtpc_bin, tmp_path, postfix):
    pw = postfix.users["alice"]
    for mech in ("PLAIN", "LOGIN"):
        r = send(smtpc_bin, tmp_path, postfix, postfix.submission_port, "--auth", mech, "--trace",
                 "--json")
        assert r.returncode == 0, r.stderr
        out = r.stdout + r.stderr
        assert pw.encode() not in out
        import base64
        for enc in (base64.b64encode(pw.encode()), base64.b64encode(b"\0alice\0" + pw.encode())):
            assert enc not in out
        if mech == "PLAIN":
            assert b"C: AUTH PLAIN ********" in r.stderr
        else:
            assert b"C: ********" in r.stderr
        assert b"C: STARTTLS" in r.stderr and b"* TLS handshake: TLSv1." in r.stderr
    postfix.wait_for(2)


# ---- certificates ---------------------------------------------------------------------

def probe(smtpc_bin, tmp_path, port, *args, host="localhost"):
    return smtpc(smtpc_bin, tmp_path, "probe", "--server", f"{host}:{port}", *args)


@pytest.mark.parametrize("name,needle", [
    ("expired", b"certificate has expired"),
    ("not_yet_valid", b"certificate is not yet valid"),
    ("wrong_host", b"does not match host name localhost"),
    ("self_signed", b"self-signed certificate"),
    ("unknown_ca", b"unable to get local issuer certificate"),
    ("wildcard", b"does not match host name localhost"),
    ("chain_incomplete", b"unable to get local issuer certificate"),
])
def test_certificate_matrix_refused(smtpc_bin, tmp_path, postfix, name, needle):
    port = postfix.starttls_ports[name]
    r = probe(smtpc_bin, tmp_path, port, "--tls", "starttls", "--ca-file", postfix.ca_file)
    assert r.returncode == 76, r.stderr
    assert needle in r.stderr, r.stderr
    # no plaintext fallback after the refused handshake
    assert b"ehlo:" not in r.stdout


@pytest.mark.parametrize("name", ["server", "server_rsa", "chain", "tls12_only"])
def test_certificate_matrix_accepted(smtpc_bin, tmp_path, postfix, name):
    port = postfix.starttls_ports[name]
    r = probe(smtpc_bin, tmp_path, port, "--tls", "starttls", "--ca-file", postfix.ca_file)
    assert r.returncode == 0, r.stderr
    assert b"verified: yes" in r.stdout
    if name == "tls12_only":
        assert b"tls: TLSv1.2" in r.stdout


def test_ip_literal_checked_against_ip_san(smtpc_bin, tmp_path, postfix):
    r = probe(smtpc_bin, tmp_path, postfix.starttls_ports["server"], "--tls", "starttls",
              "--ca-file", postfix.ca_file, host="127.0.0.1")
    assert r.returncode == 0, r.stderr
    # wrong_host has no IP SAN: refused by IP too
    r = probe(smtpc_bin, tmp_path, postfix.starttls_ports["wrong_host"], "--tls", "starttls",
              "--ca-file", postfix.ca_file, host="127.0.0.1")
    assert r.returncode == 76 and b"does not match IP address 127.0.0.1" in r.stderr, r.stderr


def test_system_store_does_not_trust_the_test_ca(smtpc_bin, tmp_path, postfix):
    r = probe(smtpc_bin, tmp_path, postfix.starttls_ports["server"], "--tls", "starttls")
    assert r.returncode == 76, r.stderr
    assert b"certificate verification failed" in r.stderr


def test_insecure_says_so(smtpc_bin, tmp_path, postfix):
    r = probe(smtpc_bin, tmp_path, postfix.starttls_ports["self_signed"], "--tls", "starttls",
              "--insecure")
    assert r.returncode == 0, r.stderr
    assert b"warning: --insecure" in r.stderr
    assert b"verified: no" in r.stdout


def test_pins(smtpc_bin, tmp_path, postfix):
    from servers.certs import process_certs
    certs = process_certs()
    good = "sha256//" + certs["server"].pin_sha256
    bad = "sha256//" + certs["server_rsa"].pin_sha256
    port = postfix.starttls_ports["server"]
    r = probe(smtpc_bin, tmp_path, port, "--tls", "starttls", "--ca-file", postfix.ca_file,
              "--pin", good)
    assert r.returncode == 0, r.stderr
    r = probe(smtpc_bin, tmp_path, port, "--tls", "starttls", "--ca-file", postfix.ca_file,
              "--pin", bad)
    assert r.returncode == 76 and b"pin" in r.stderr.lower(), r.stderr
    # a pin alone (with --insecure) accepts a self-signed server whose key it names
    ss = "sha256//" + certs["self_signed"].pin_sha256
    r = probe(smtpc_bin, tmp_path, postfix.starttls_ports["self_signed"], "--tls", "starttls",
              "--insecure", "--pin", ss)
    assert r.returncode == 0, r.stderr


def test_client_certificate(smtpc_bin, tmp_path, postfix):
    from servers.certs import process_certs
    cl = process_certs()["client"]
    r = send(smtpc_bin, tmp_path, postfix, postfix.ccert_port, "--tls", "starttls",
             "--cert", cl.cert, "--key", cl.key, user=None)
    assert r.returncode == 0, r.stderr
    [m] = postfix.wait_for(1)
    assert "verified OK" in str(m.received)


def test_tls_versions(smtpc_bin, tmp_path, postfix):
    port = postfix.starttls_ports["server"]
    r = probe(smtpc_bin, tmp_path, port, "--tls", "starttls", "--ca-file", postfix.ca_file,
              "--tls-max", "1.2")
    assert r.returncode == 0 and b"tls: TLSv1.2" in r.stdout, r.stderr
    r = probe(smtpc_bin, tmp_path, postfix.starttls_ports["tls12_only"], "--tls", "starttls",
              "--ca-file", postfix.ca_file, "--tls-min", "1.3")
    assert r.returncode == 76, r.stderr


# ---- probe ----------------------------------------------------------------------------

def test_probe_submission_text(smtpc_bin, tmp_path, postfix):
    r = probe(smtpc_bin, tmp_path, postfix.submission_port, "--tls", "starttls", "--ca-file",
              postfix.ca_file)
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert out.startswith("greeting: 220 ")
    assert "tls: TLSv1.3 (starttls)" in out
    assert "subject: CN=localhost" in out and "verified: yes" in out and "expires: " in out
    # the capabilities after STARTTLS: AUTH is offered only there
    assert "auth: SCRAM-SHA-256 SCRAM-SHA-1 CRAM-MD5 PLAIN LOGIN" in out
    assert "  PIPELINING" in out and "STARTTLS" not in out.split("ehlo:")[1]


def test_probe_smtps_json(smtpc_bin, tmp_path, postfix):
    r = probe(smtpc_bin, tmp_path, postfix.smtps_port, "--tls", "implicit", "--ca-file",
              postfix.ca_file, "--json")
    assert r.returncode == 0, r.stderr
    o = json.loads(r.stdout)
    assert o["ok"] and o["tls"] == "tls" and o["greeting"]["code"] == 220
    ti = o["tls_info"]
    assert ti["version"] in ("TLSv1.3", "TLSv1.2") and ti["verified"] is True and ti["cipher"]
    assert ti["subject"] == "CN=localhost" and ti["not_after"]
    assert set(o["auth_mechanisms"]) >= {"PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256"}
    assert "PIPELINING" in o["extensions"]


def test_probe_with_credentials_checks_them(smtpc_bin, tmp_path, postfix):
    r = smtpc(smtpc_bin, tmp_path, "probe", "--server", f"localhost:{postfix.submission_port}",
              "--ca-file", postfix.ca_file, "--user", "alice", "--password-env", "PW", "--json",
              password="nope")
    assert r.returncode == 77, r.stderr
    r = smtpc(smtpc_bin, tmp_path, "probe", "--server", f"localhost:{postfix.submission_port}",
              "--ca-file", postfix.ca_file, "--user", "alice", "--password-env", "PW", "--json",
              password=postfix.password)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["authenticated"] == "SCRAM-SHA-256"


def test_auto_does_not_fall_back_after_a_refused_certificate(smtpc_bin, tmp_path, postfix):
    # a TLS server whose certificate we refuse is not retried in plaintext
    from servers.certs import process_certs  # noqa: F401
    t0 = time.monotonic()
    r = probe(smtpc_bin, tmp_path, postfix.smtps_port, "--tls", "auto")  # system store: refused
    took = time.monotonic() - t0
    assert r.returncode == 76, r.stderr
    assert b"certificate verification failed" in r.stderr and b"plaintext" not in r.stderr
    assert took < 4


def test_config_file_keys_apply(smtpc_bin, tmp_path, postfix):
    conf = tmp_path / "smtpc.conf"
    conf.write_text(f"[account sub]\nserver = localhost\nport = {postfix.submission_port}\n"
                    f"tls = starttls\nuser = alice\npassword-env = PW\nca-file = {postfix.ca_file}\n"
                    "auth = CRAM-MD5\nfrom = sender@example.org\n")
    conf.chmod(0o600)
    env = env_for(tmp_path, PW=postfix.password, SMTPC_CONFIG=str(conf))
    r = subprocess.run([smtpc_bin, "send", "--account", "sub", "--to", "cfg@example.net",
                        "--text", "from config", "--json"], cwd=tmp_path, capture_output=True,
                       timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    o = json.loads(r.stdout)
    assert o["tls"]["mode"] == "starttls" and o["auth"] == "CRAM-MD5"
    [m] = postfix.wait_for(1)
    assert m.rcpt_to == "cfg@example.net"


def test_c_api_open_lists_and_no_second_starttls(postfix):
    from conftest import driver
    r = subprocess.run([driver("secure"), "localhost", str(postfix.submission_port), "--ca",
                        postfix.ca_file, "--user", "alice", "--password", postfix.password,
                        "--auth", "PLAIN,CRAM-MD5", "--starttls-again", "--send", "--to",
                        "api@example.net"], capture_output=True, timeout=120)
    out = r.stdout.decode()
    assert r.returncode == 0, out
    assert "open rc=SMTPC_OK" in out and "security starttls" in out
    assert "auth CRAM-MD5" in out  # the strongest in both lists
    assert "offered SCRAM-SHA-256 SCRAM-SHA-1 CRAM-MD5 PLAIN LOGIN" in out
    assert "allowed CRAM-MD5 PLAIN" in out
    assert "again rc=SMTPC_ESTATE connected=1" in out  # never STARTTLS twice
    assert "tls TLSv1.3 verified=1" in out
    assert "send rc=SMTPC_OK" in out
    [m] = postfix.wait_for(1)
    assert m.rcpt_to == "api@example.net"


@pytest.mark.parametrize("name,ok", [
    ("mx.example.test", True),          # one label for the '*'
    ("MX.Example.Test", True),          # names compare case-insensitively
    ("example.test", False),            # '*' never matches nothing
    ("a.b.example.test", False),        # nor more than one label
    ("mx.example.test.evil.org", False),
])
def test_wildcard_edge_cases(postfix, name, ok):
    from conftest import driver
    r = subprocess.run([driver("secure"), "127.0.0.1", str(postfix.starttls_ports["wildcard"]),
                        "--mode", "starttls", "--ca", postfix.ca_file, "--server-name", name],
                       capture_output=True, timeout=120)
    out = r.stdout.decode()
    if ok:
        assert "open rc=SMTPC_OK" in out and "verified=1" in out, out
    else:
        assert "open rc=SMTPC_ETLS" in out and "does not match host name" in out, out


def test_strict_version_policy(smtpc_bin, tmp_path, postfix):
    port = postfix.starttls_ports["server"]
    # TLS 1.0 is below the library's floor: nearest (1.2) by default, refused when strict
    r = probe(smtpc_bin, tmp_path, port, "--tls", "starttls", "--ca-file", postfix.ca_file,
              "--tls-min", "1.0", "--tls-max", "1.2")
    assert r.returncode == 0 and b"tls: TLSv1.2" in r.stdout, r.stderr
    r = probe(smtpc_bin, tmp_path, port, "--tls", "starttls", "--ca-file", postfix.ca_file,
              "--tls-min", "1.0", "--tls-strict-version")
    assert r.returncode == 69 and b"1.0" in r.stderr, r.stderr


@pytest.mark.parametrize("how", ["file", "cmd"])
def test_password_file_and_cmd(smtpc_bin, tmp_path, postfix, how):
    pwf = tmp_path / "pw"
    pwf.write_text(postfix.password + "\n")
    src = ["--password-file", str(pwf)] if how == "file" else ["--password-cmd", f"cat {pwf}"]
    r = smtpc(smtpc_bin, tmp_path, "send", "--server", f"localhost:{postfix.submission_port}",
              "--ca-file", postfix.ca_file, "--from", FROM, "--to", f"{how}@example.net",
              "--text", "x", "--user", "alice", *src, "--trace")
    assert r.returncode == 0, r.stderr
    assert postfix.password.encode() not in r.stdout + r.stderr
    postfix.wait_for(1)
