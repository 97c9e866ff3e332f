"""libsmtpc.so opens libssl, libcrypto and libidn2 only when it needs them
(src/lazy/lazy.c), and the CLI links libsmtpc.so like any program: a plain
send to an ASCII domain loads none of them; STARTTLS with SCRAM loads libssl
and libcrypto, a non-ASCII domain libidn2; a library that cannot be loaded is
a clear error (SMTPC_ELIBRARY, the CLI's exit 72), not a crash.

What the dynamic loader did is read from its own trace (LD_DEBUG=files)."""
import os
import re
import shutil
import subprocess

import pytest

from conftest import BUILD_DIR, SOURCE_DIR
from servers.aiosmtpd_server import aiosmtpd, free_port  # noqa: F401
from servers.postfix import postfix, postfix_server  # noqa: F401

FROM = "sender@example.org"
LIBS = ("libssl.so", "libcrypto.so", "libidn2.so", "libunistring.so")


def lazy_build():
    cache = (BUILD_DIR / "CMakeCache.txt").read_text() if (BUILD_DIR / "CMakeCache.txt").exists() else ""
    return "SMTPC_LAZY_LIBS:BOOL=OFF" not in cache


pytestmark = pytest.mark.skipif(not lazy_build(), reason="built with SMTPC_LAZY_LIBS=OFF")


def env_for(tmp_path, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMTPC_") and k != "LD_DEBUG"}
    env.update(HOME=str(tmp_path), SMTPC_CONFIG="/dev/null", LD_DEBUG="files")
    env.update(extra)
    return env


def run(smtpc_bin, tmp_path, *args, env=None):
    r = subprocess.run([smtpc_bin, *args], cwd=tmp_path, capture_output=True, timeout=120,
                       env=env or env_for(tmp_path))
    # "file=libssl.so.3 [0];  needed by ..." or "...;  dynamically loaded by ..."
    loaded = set(re.findall(rb"file=(lib[\w+-]+\.so)[.\d]* \[\d+\];", r.stderr))
    return r, {x.decode() for x in loaded}


def needed(path):
    out = subprocess.run(["readelf", "-d", str(path)], capture_output=True, text=True, check=True).stdout
    return re.findall(r"\(NEEDED\)\s+Shared library: \[(.*?)\]", out)


def test_neither_the_library_nor_the_executable_links_them(smtpc_bin):
    lib = needed(BUILD_DIR / "libsmtpc.so")
    assert lib and not [n for n in lib if n.startswith(LIBS)], lib
    exe = needed(smtpc_bin)
    # the CLI is an outside program: it links libsmtpc.so, not the archive
    assert "libsmtpc.so.0" in exe and not [n for n in exe if n.startswith(LIBS)], exe


def test_forwarders_are_private_and_only_in_the_shared_library():
    """A program that links OpenSSL itself must never bind to libsmtpc's
    forwarders, and libsmtpc.a must not define them at all (they would clash
    with the program's own link)."""
    dyn = subprocess.run(["nm", "-D", "--defined-only", str(BUILD_DIR / "libsmtpc.so")],
                         capture_output=True, text=True, check=True).stdout
    assert not re.search(r" (SSL_|EVP_|idn2_)\w+$", dyn, re.M), "forwarders exported"
    assert re.search(r" T smtpc_session_new$", dyn, re.M)  # the check can see exports
    arch = subprocess.run(["nm", "--defined-only", str(BUILD_DIR / "libsmtpc.a")],
                          capture_output=True, text=True, check=True).stdout
    assert not re.search(r" T (SSL_new|EVP_MD_CTX_new|idn2_to_ascii_8z)$", arch, re.M)


def test_plain_ascii_send_loads_none(smtpc_bin, tmp_path, aiosmtpd):
    srv = aiosmtpd()
    r, loaded = run(smtpc_bin, tmp_path, "send", "--server", f"127.0.0.1:{srv.port}", "--tls", "none",
                    "--from", FROM, "--to", "b@example.org", "--subject", "s", "--text", "hello")
    assert r.returncode == 0, r.stderr[-2000:]
    assert [e.rcpt_tos for e in srv.envelopes] == [["b@example.org"]]
    assert "libc.so" in loaded  # the trace is there: the check below can fail
    assert not [x for x in loaded if x.startswith(LIBS)], loaded


def test_pickup_and_version_load_none(smtpc_bin, tmp_path):
    r, loaded = run(smtpc_bin, tmp_path, "send", "--pickup-dir", "pk", "--from", FROM, "--to", "b@example.org",
                    "--text", "x")
    assert r.returncode == 0, r.stderr[-2000:]
    assert len(os.listdir(tmp_path / "pk")) == 1
    assert not [x for x in loaded if x.startswith(LIBS)], loaded


def test_starttls_with_scram_loads_ssl_and_crypto(smtpc_bin, tmp_path, postfix):
    env = env_for(tmp_path, PW=postfix.users["alice"])
    r, loaded = run(smtpc_bin, tmp_path, "send", "--server", f"localhost:{postfix.submission_port}",
                    "--tls", "starttls", "--ca-file", postfix.ca_file, "--user", "alice", "--password-env", "PW",
                    "--auth", "SCRAM-SHA-256", "--from", FROM, "--to", "user@example.net",
                    "--subject", "lazy", "--text", "over tls", env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert {"libssl.so", "libcrypto.so"} <= loaded
    assert "libidn2.so" not in loaded
    [m] = postfix.wait_for(1)
    assert m.rcpt_to == "user@example.net" and b"over tls" in m.original and "TLS" in m.received


def test_idn_domain_loads_idn2(smtpc_bin, tmp_path, aiosmtpd):
    srv = aiosmtpd()
    r, loaded = run(smtpc_bin, tmp_path, "send", "--server", f"127.0.0.1:{srv.port}", "--tls", "none",
                    "--from", FROM, "--to", "b@b\u00fccher.example", "--text", "x")
    assert r.returncode == 0, r.stderr[-2000:]
    assert [e.rcpt_tos for e in srv.envelopes] == [["b@xn--bcher-kva.example"]]
    assert "libidn2.so" in loaded and "libssl.so" not in loaded


@pytest.fixture
def broken_libs(tmp_path):
    """A directory whose libssl/libcrypto/libidn2 are empty files: dlopen
    finds them first through LD_LIBRARY_PATH and cannot load them."""
    d = tmp_path / "broken"
    d.mkdir()
    for name in ("libssl.so.3", "libcrypto.so.3", "libidn2.so.0"):
        (d / name).write_bytes(b"")
    return str(d)


def send_with(smtpc_bin, tmp_path, broken_libs, port, tls, to):
    """smtpc send where dlopen finds the broken libraries first (no LD_DEBUG)."""
    env = env_for(tmp_path, LD_LIBRARY_PATH=broken_libs)
    del env["LD_DEBUG"]
    return subprocess.run([smtpc_bin, "send", "--server", f"127.0.0.1:{port}", "--tls", tls,
                           "--from", FROM, "--to", to, "--text", "x"], cwd=tmp_path,
                          capture_output=True, timeout=120, env=env)


def test_unloadable_libssl_is_a_clear_error(smtpc_bin, tmp_path, aiosmtpd, broken_libs):
    srv = aiosmtpd()
    r = send_with(smtpc_bin, tmp_path, broken_libs, srv.port, "starttls", "b@example.org")
    assert r.returncode == 72, r.stderr
    assert re.search(rb"cannot load libssl\.so\.\d+ \(needed for TLS\): .*broken", r.stderr), r.stderr
    assert srv.envelopes == []
    # the same binary, same environment, a plain send: nothing to load, it works
    r = send_with(smtpc_bin, tmp_path, broken_libs, srv.port, "none", "b@example.org")
    assert r.returncode == 0, r.stderr
    assert len(srv.envelopes) == 1


def test_unloadable_libidn2_is_a_clear_error(smtpc_bin, tmp_path, aiosmtpd, broken_libs):
    srv = aiosmtpd()
    r = send_with(smtpc_bin, tmp_path, broken_libs, srv.port, "none", "b@b\u00fccher.example")
    assert r.returncode == 72, r.stderr
    assert b"cannot load libidn2.so.0 (needed for internationalised domain names)" in r.stderr
    assert srv.envelopes == []


def test_every_forwarded_function_is_generated(tmp_path):
    """src/lazy/lazy_syms.h is what scripts/gen_lazy.py makes from this build:
    a stale list would fail the link, a hand edit would show here."""
    if shutil.which("gcc") is None or not (BUILD_DIR / "libsmtpc.a").exists():
        pytest.skip("needs gcc and the static library")
    work = tmp_path / "src"
    shutil.copytree(SOURCE_DIR / "scripts", work / "scripts")
    (work / "src" / "lazy").mkdir(parents=True)
    r = subprocess.run(["/usr/bin/python3", str(work / "scripts" / "gen_lazy.py"), str(BUILD_DIR)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    got = (work / "src" / "lazy" / "lazy_syms.h").read_text()
    assert got == (SOURCE_DIR / "src" / "lazy" / "lazy_syms.h").read_text()
