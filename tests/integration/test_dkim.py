"""DKIM signatures made by libsmtpc, checked by verifiers no one here wrote:
Python's dkimpy (Debian python3-dkim) and Perl's Mail::DKIM (Debian
libmail-dkim-perl, the verifier SpamAssassin uses); and a message signed by
dkimpy checked by libsmtpc's verifier.

Messages are signed by tests/integration/drv_dkim.c, which streams the file
twice as a sender does (a first pass through the signing context, then the
fields and the file again). Keys are made at test time with `openssl genpkey`.

Debian 12's Mail::DKIM (1.20230212) has no ed25519-sha256: there it checks
the RSA signature and reports the Ed25519 one as an unsupported algorithm,
which is exactly why both are sent during the transition.
"""
import base64
import os
import subprocess
import sys

import pytest

import dkim

from conftest import driver, sanitized

DOMAIN = "example.org"
T0 = 1765000000  # a fixed t= for reproducible output

CANONS = ["relaxed/relaxed", "simple/simple", "relaxed/simple", "simple/relaxed"]

LONG_WORDS = " ".join(f"w{i:04d}" for i in range(400))
MESSAGES = {
    "plain": (
        b"From: Alice <alice@example.org>\r\n"
        b"To: bob@example.com\r\n"
        b"Subject: Hello\r\n"
        b"Date: Mon, 07 Dec 2026 03:00:00 +0000\r\n"
        b"Message-ID: <1@example.org>\r\n"
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"\r\n"
        b"Hello Bob.\r\n"
    ),
    "8bit": (  # and SMTPUTF8: raw UTF-8 in addresses
        "From: Zoë <zoe@example.org>\r\n"
        "To: José <josé@exämple.com>\r\n"
        "Subject: café — déjà vu\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n"
        "\r\n"
        "Ça va ? Ünïcödé body — 日本語\r\n"
    ).encode(),
    "folded_dup_long": (
        b"From: a@example.org\r\n"
        b"To: one@example.com,\r\n"
        b"\ttwo@example.com,\r\n"
        b"    three@example.com\r\n"
        b"Cc: x@example.com\r\n"
        b"Cc: y@example.com\r\n"
        b"Subject:   spaced\t\tout   subject   \r\n"
        b"References: " + " ".join(f"<{i}@example.org>" for i in range(150)).replace(" ", "\r\n ").encode() + b"\r\n"
        b"X-Long: " + LONG_WORDS.encode() + b"\r\n"
        b"X-Dup: 1\r\n"
        b"X-Dup: 2\r\n"
        b"\r\n"
        b"body\r\n"
    ),
    "empty_body": b"From: a@example.org\r\nSubject: nothing\r\n\r\n",
    "no_body_at_all": b"From: a@example.org\r\nSubject: no blank line\r\n",
    "no_final_crlf": b"From: a@example.org\r\nSubject: x\r\n\r\nline one\r\nlast line",
    "trailing_ws": (
        b"From: a@example.org\r\nSubject: ws\r\n\r\n"
        b"trailing spaces   \r\n"
        b"tabs\t\t\r\n"
        b"  leading and   inner\t \truns\r\n"
        b" \t \r\n"
        b"\r\n"
        b"text after blank lines\r\n"
        b"\r\n\r\n\r\n"
    ),
    "lf_only": b"From: a@example.org\nSubject: unix\n\nline\n\n  indented  \n\n",
    "lone_cr": b"From: a@example.org\r\nSubject: cr\r\n\r\nold\rmac\r\rends\r\n",
}


def wire(b):
    """The message as the SMTP engine sends it: every CR, LF or CRLF one
    CRLF, and a CRLF at the end. The signer signs this form."""
    b = b.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    return b if b.endswith(b"\r\n") else b + b"\r\n"


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("dkimkeys")

    def gen(name, args, traditional=False):
        path = d / f"{name}.pem"
        subprocess.run(["openssl", "genpkey", *args, "-out", str(path)], check=True, capture_output=True)
        if traditional:  # PKCS#1 "RSA PRIVATE KEY"
            trad = d / f"{name}.pkcs1"
            subprocess.run(["openssl", "pkey", "-in", str(path), "-traditional", "-out", str(trad)],
                           check=True, capture_output=True)
            assert trad.read_bytes().startswith(b"-----BEGIN RSA PRIVATE KEY-----")
            os.replace(trad, path)
        os.chmod(path, 0o600)
        der = subprocess.run(["openssl", "pkey", "-in", str(path), "-pubout", "-outform", "DER"],
                             check=True, capture_output=True).stdout
        if "ed" in name:
            pub, k = der[-32:], "ed25519"  # RFC 8463: the raw key
        else:
            pub, k = der, "rsa"
        txt = f"v=DKIM1; k={k}; p={base64.b64encode(pub).decode()}"
        priv = subprocess.run(["openssl", "pkey", "-in", str(path), "-outform", "DER"],
                              check=True, capture_output=True).stdout
        return {"path": str(path), "txt": txt, "selector": name, "der": priv,
                "pem": path.read_bytes()}

    return {
        "rsa": gen("rsa", ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]),
        "rsa1": gen("rsa1", ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"], traditional=True),
        "rsa4": gen("rsa4", ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:4096"]),
        "ed": gen("ed", ["-algorithm", "ED25519"]),
    }


def records(keys):
    return {f"{k['selector']}._domainkey.{DOMAIN}": k["txt"] for k in keys.values()}


def sign(tmp_path, msg, keylist, canon="relaxed/relaxed", extra=(), step=None):
    src = tmp_path / "in.eml"
    src.write_bytes(msg)
    args = [driver("dkim"), "sign", "--domain", DOMAIN, "--canon", canon, "--time", str(T0)]
    for k in keylist:
        args += ["--key", f"{k['selector']}={k['path']}"]
    if step:
        args += ["--step", str(step)]
    args += [*extra, str(src)]
    p = subprocess.run(args, capture_output=True, timeout=120)
    assert p.returncode == 0, p.stderr.decode()
    return p.stdout


def dkimpy_results(msg, keys):
    """dkimpy's verdict for every signature of msg (True/False each)."""
    recs = records(keys)

    def dnsfunc(name, timeout=5):
        n = name.decode() if isinstance(name, bytes) else name
        return recs.get(n.rstrip("."), "").encode()

    d = dkim.DKIM(msg, minkey=1024)
    n = sum(1 for (k, _) in d.headers if k.lower() == b"dkim-signature")
    out = []
    for i in range(n):
        try:
            out.append(dkim.DKIM(msg, minkey=1024).verify(idx=i, dnsfunc=dnsfunc))
        except dkim.DKIMException:  # e.g. "body hash mismatch" is raised, not returned
            out.append(False)
    return out


PERL = r"""
use strict; use warnings;
use Mail::DKIM::Verifier; use Net::DNS;
my %txt;
my @files;
for (@ARGV) { if (/^txt:([^=]+)=(.*)$/s) { $txt{$1} = $2 } else { push @files, $_ } }
no warnings 'redefine';
*Mail::DKIM::DNS::query = sub {
    my ($name, $type) = @_;
    $name =~ s/\.$//;
    my $v = $txt{$name};
    return () unless defined $v;
    my @parts = ($v =~ /(.{1,250})/gs);
    return (Net::DNS::RR->new(name => $name, type => 'TXT', txtdata => [@parts]));
};
for my $f (@files) {
    open my $fh, '<:raw', $f or die "$f: $!";
    local $/; my $m = <$fh>; close $fh;
    my $v = Mail::DKIM::Verifier->new();
    $v->PRINT($m);
    $v->CLOSE;
    my @r = map { join(' ', $_->result, $_->algorithm, $_->selector, ($_->result_detail // '-')) } $v->signatures;
    print "$f\t", join("|", @r), "\n";
}
"""


def perl_results(files, keys):
    args = ["perl", "-e", PERL] + [f"txt:{n}={v}" for n, v in records(keys).items()] + [str(f) for f in files]
    p = subprocess.run(args, capture_output=True, timeout=300)
    assert p.returncode == 0, p.stderr.decode()
    out = {}
    for line in p.stdout.decode().splitlines():
        f, _, rest = line.partition("\t")
        out[f] = rest.split("|") if rest else []
    return out


# ---------------------------------------------------------------------------


@pytest.mark.parametrize("canon", CANONS)
@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_dkimpy_verifies_both_algorithms(tmp_path, keys, canon, name):
    signed = sign(tmp_path, MESSAGES[name], [keys["rsa"], keys["ed"]], canon, step=7)
    assert signed.startswith(b"DKIM-Signature: v=1; a=rsa-sha256; c=" + canon.encode())
    assert b"\r\nDKIM-Signature: v=1; a=ed25519-sha256;" in signed
    assert b" l=" not in signed.split(b"\r\n\r\n")[0]
    assert dkimpy_results(wire(signed), keys) == [True, True]


def test_dkimpy_key_forms_and_sizes(tmp_path, keys):
    """PKCS#1 1024-bit and PKCS#8 4096-bit RSA keys sign too."""
    signed = sign(tmp_path, MESSAGES["plain"], [keys["rsa1"], keys["rsa4"]])
    assert dkimpy_results(signed, keys) == [True, True]
    assert b"s=rsa1;" in signed and b"s=rsa4;" in signed


def test_dkimpy_identity_expiry_and_header_list(tmp_path, keys):
    signed = sign(tmp_path, MESSAGES["folded_dup_long"], [keys["ed"], keys["rsa"]],
                  extra=["--identity", "news@mail.example.org", "--expiry", str(10 ** 9),
                         "--headers", "From:To:+Cc:X-Dup:Subject"])
    head = signed.split(b"\r\n\r\n")[0]
    assert b"i=news@mail.example.org;" in head
    assert b"x=%d;" % (T0 + 10 ** 9) in head
    unfolded = head.replace(b"\r\n ", b"")
    assert b"h=from:from:to:cc:cc:cc:x-dup:x-dup:subject;" in unfolded
    assert dkimpy_results(signed, keys) == [True, True]


def test_dkimpy_sees_oversigned_fields(tmp_path, keys):
    """An added From, Subject or List-Unsubscribe breaks the signature; an
    added Received (a relay's) does not."""
    signed = sign(tmp_path, MESSAGES["plain"], [keys["rsa"], keys["ed"]])
    for field, ok in [(b"Received: from relay by mx\r\n", True), (b"From: evil@example.net\r\n", False),
                      (b"Subject: Other\r\n", False),
                      (b"List-Unsubscribe: <https://evil.example/u>\r\n", False)]:
        assert dkimpy_results(field + signed, keys) == [ok, ok], field


def test_dkimpy_rejects_a_changed_body(tmp_path, keys):
    signed = sign(tmp_path, MESSAGES["plain"], [keys["rsa"], keys["ed"]])
    assert dkimpy_results(signed.replace(b"Hello Bob", b"Hello Eve"), keys) == [False, False]


def test_mail_dkim_verifies_rsa(tmp_path, keys):
    """Mail::DKIM: every message, every canonicalization; the RSA signature
    passes, the Ed25519 one is an algorithm this version does not know."""
    files, expect = [], {}
    for canon in CANONS:
        for name, msg in sorted(MESSAGES.items()):
            sub = tmp_path / f"{name}-{canon.replace('/', '_')}"
            sub.mkdir()
            signed = wire(sign(sub, msg, [keys["rsa"], keys["ed"]], canon, step=5))
            f = sub / "signed.eml"
            f.write_bytes(signed)
            files.append(f)
    for k in ("rsa1", "rsa4"):
        sub = tmp_path / k
        sub.mkdir()
        f = sub / "signed.eml"
        f.write_bytes(sign(sub, MESSAGES["8bit"], [keys[k]]))
        files.append(f)
    res = perl_results(files, keys)
    assert len(res) == len(files)
    for f in files:
        r = res[str(f)]
        assert r[0].startswith("pass rsa-sha256"), (f, r)
        if len(r) > 1:
            assert r[1].split(" ")[0] in ("invalid", "none", "neutral"), (f, r)
            assert "ed25519" in r[1] or "unsupported" in r[1] or "algorithm" in r[1], (f, r)
    # and a tampered one fails there too
    bad = tmp_path / "bad.eml"
    bad.write_bytes(files[0].read_bytes().replace(b"From: ", b"From: x", 1))
    assert perl_results([bad], keys)[str(bad)][0].startswith("fail"), "tampered message passed"


@pytest.mark.parametrize("canon", CANONS)
@pytest.mark.parametrize("alg", ["rsa", "ed"])
def test_dkimpy_signature_verifies_with_smtpc(tmp_path, keys, canon, alg):
    """A message signed by dkimpy passes smtpc's verifier; a changed one fails."""
    msg = MESSAGES["folded_dup_long"]
    k = keys[alg]
    if alg == "ed":
        priv = base64.b64encode(k["der"][-32:])  # dkimpy takes the raw Ed25519 seed
        algo = b"ed25519-sha256"
    else:
        priv = k["pem"]
        algo = b"rsa-sha256"
    h, b = canon.split("/")
    sig = dkim.sign(msg, k["selector"].encode(), DOMAIN.encode(), priv, canonicalize=(h.encode(), b.encode()),
                    signature_algorithm=algo)
    f = tmp_path / "dkimpy.eml"
    f.write_bytes(sig + msg)
    args = [driver("dkim"), "verify"] + sum((["--txt", f"{n}={v}"] for n, v in records(keys).items()), []) + [str(f)]
    out = subprocess.run(args, capture_output=True, check=True).stdout.decode().splitlines()
    assert out == [f"pass {algo.decode()} {k['selector']} {DOMAIN} -"]
    f.write_bytes(sig + msg.replace(b"body", b"bodY"))
    out = subprocess.run(args, capture_output=True, check=True).stdout.decode().splitlines()
    assert out == [f"fail {algo.decode()} {k['selector']} {DOMAIN} body hash mismatch"]


@pytest.mark.parametrize("canon", CANONS)
@pytest.mark.parametrize("eightbit", [False, True])
def test_composed_message_two_writer_passes(tmp_path, keys, canon, eightbit):
    """A message of the message API, signed from one writer (the first pass)
    and sent from a second: both verifiers accept it, and the one-click
    unsubscribe fields (RFC 8058) are covered by the signature."""
    args = [driver("dkim"), "compose", "--domain", DOMAIN, "--canon", canon, "--time", str(T0),
            "--key", f"rsa={keys['rsa']['path']}", "--key", f"ed={keys['ed']['path']}"]
    if eightbit:
        args.append("--8bit")
    p = subprocess.run(args, capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr.decode()
    signed = p.stdout
    head = signed.split(b"\r\n\r\n")[0].replace(b"\r\n ", b"")
    assert b"list-unsubscribe:list-unsubscribe:list-unsubscribe-post:list-unsubscribe-post:" in head
    assert (b"Content-Transfer-Encoding: 8bit" in signed) == eightbit
    assert dkimpy_results(signed, keys) == [True, True]
    f = tmp_path / "composed.eml"
    f.write_bytes(signed)
    r = perl_results([f], keys)[str(f)]
    assert r[0].startswith("pass rsa-sha256"), r
    # a changed unsubscribe URL fails
    bad = signed.replace(b"example.org/u/1", b"example.org/u/2")
    assert bad != signed and dkimpy_results(bad, keys) == [False, False]


def test_dkimpy_length_tag_is_honoured(tmp_path, keys):
    """smtpc never writes l=, but its verifier reads it: text appended after
    the signed length still passes, a body shorter than l= does not."""
    msg = MESSAGES["plain"]
    sig = dkim.sign(msg, b"rsa", DOMAIN.encode(), keys["rsa"]["pem"], length=True,
                    canonicalize=(b"relaxed", b"relaxed"))
    assert b"l=" in sig
    f = tmp_path / "l.eml"
    args = [driver("dkim"), "verify", "--txt", f"rsa._domainkey.{DOMAIN}={keys['rsa']['txt']}", str(f)]
    f.write_bytes(sig + msg + b"appended by a list\r\n")
    assert subprocess.run(args, capture_output=True, check=True).stdout.startswith(b"pass rsa-sha256")
    f.write_bytes(sig + msg[:-4])
    out = subprocess.run(args, capture_output=True, check=True).stdout
    assert out.startswith(b"permerror") or out.startswith(b"fail"), out


def test_big_message_constant_memory(tmp_path, keys):
    """A 64 MiB message is signed in two streaming passes in a few MiB, and
    dkimpy agrees with the result."""
    src = tmp_path / "big.eml"
    line = b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0\r\n"
    with open(src, "wb") as f:
        f.write(b"From: a@example.org\r\nSubject: big\r\nContent-Type: application/octet-stream\r\n"
                b"Content-Transfer-Encoding: base64\r\n\r\n")
        chunk = line * (1 << 14)
        for _ in range((64 << 20) // len(chunk)):
            f.write(chunk)
    out = tmp_path / "big.signed"
    args = [driver("dkim"), "sign", "--domain", DOMAIN, "--time", str(T0), "--rss",
            "--key", f"ed={keys['ed']['path']}", "--key", f"rsa={keys['rsa']['path']}", str(src)]
    with open(out, "wb") as f:
        p = subprocess.run(args, stdout=f, stderr=subprocess.PIPE, timeout=300)
    assert p.returncode == 0, p.stderr.decode()
    rss = int(p.stderr.decode().split("maxrss_kib ")[1])
    if not sanitized():
        assert rss < 16 * 1024, f"{rss} KiB resident"
    data = out.read_bytes()
    assert dkimpy_results(data, keys) == [True, True]


def test_refusals_are_clear(tmp_path, keys):
    """A world-readable key file, an EC key and a key without From: each a
    clear error, nothing written."""
    src = tmp_path / "m.eml"
    src.write_bytes(MESSAGES["plain"])
    loose = tmp_path / "loose.pem"
    loose.write_bytes(keys["ed"]["pem"])
    os.chmod(loose, 0o644)
    p = subprocess.run([driver("dkim"), "sign", "--domain", DOMAIN, "--key", f"s={loose}", str(src)],
                       capture_output=True)
    assert p.returncode == 1 and p.stdout == b""
    assert b"SMTPC_ECONFIG" in p.stderr and b"group or others" in p.stderr and b"chmod 600" in p.stderr
    ec = tmp_path / "ec.pem"
    subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-out", str(ec)], check=True, capture_output=True)
    os.chmod(ec, 0o600)
    p = subprocess.run([driver("dkim"), "sign", "--domain", DOMAIN, "--key", f"s={ec}", str(src)],
                       capture_output=True)
    assert p.returncode == 1 and b"unsupported key type" in p.stderr
    src.write_bytes(b"To: b@example.com\r\n\r\nno from\r\n")
    p = subprocess.run([driver("dkim"), "sign", "--domain", DOMAIN, "--key", f"s={keys['ed']['path']}", str(src)],
                       capture_output=True)
    assert p.returncode == 1 and p.stdout == b"" and b"no From" in p.stderr
