"""The library's manual and examples cannot silently fall behind the code.

- every docs/*.3 page renders with groff -mandoc -ww without a warning;
- every SMTPC_API function declared in include/smtpc/*.h is mentioned in
  some docs/*.3 page;
- every examples/*.c compiles with -Wall -Wextra -Werror against the build
  tree's headers and libsmtpc.a;
- the session and message examples really send to aiosmtpd, and what the
  server received is checked;
- the docs point only inside the repository, and the tree keeps the rules
  of docs/ARCHITECTURE.md: no prototypes declared in .c files, includes
  only down the layers.
"""
import pathlib
import re
import shutil
import subprocess

import pytest

from conftest import BUILD_DIR, SOURCE_DIR, sanitized
from servers.aiosmtpd_server import aiosmtpd  # noqa: F401

PAGES = sorted((SOURCE_DIR / "docs").glob("*.3"))
EXAMPLES = sorted((SOURCE_DIR / "examples").glob("*.c"))
HEADERS = sorted((SOURCE_DIR / "include" / "smtpc").glob("*.h"))


def api_functions():
    """Names of the SMTPC_API functions of the public headers."""
    names = set()
    for h in HEADERS:
        text = h.read_text()
        text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
        text = re.sub(r"^\s*#.*$", " ", text, flags=re.M)  # the SMTPC_API macro itself
        for decl in re.findall(r"SMTPC_API\b([^;{]*?)\(", text):
            m = re.search(r"([A-Za-z_][A-Za-z0-9_]*)\s*$", decl)
            if m:
                names.add(m.group(1))
    return names


def test_there_are_pages_and_examples():
    names = {p.name for p in PAGES}
    for want in ("libsmtpc.3", "smtpc_session.3", "smtpc_message.3", "smtpc_client.3",
                 "smtpc_bulk.3"):
        assert want in names
    assert {"send_session.c", "send_message.c", "send_client.c", "send_async.c",
            "send_bulk.c"} <= {e.name for e in EXAMPLES}
    assert len(api_functions()) > 100  # the parser still finds the declarations


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_page_renders_without_warnings(page):
    if not shutil.which("groff"):
        pytest.skip("groff not installed")
    r = subprocess.run(["groff", "-mandoc", "-ww", "-Tutf8", "-z", str(page)],
                       capture_output=True, timeout=60)
    assert r.returncode == 0 and r.stderr == b"", r.stderr.decode()
    # Both mdoc front ends agree on the page (mandoc is stricter when present).
    if shutil.which("mandoc"):
        r = subprocess.run(["mandoc", "-Tlint", "-Wwarning", str(page)],
                           capture_output=True, timeout=60)
        assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()


def test_every_api_function_is_documented():
    text = "\n".join(p.read_text() for p in PAGES)
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text))
    missing = sorted(api_functions() - words)
    assert not missing, "not mentioned in any docs/*.3 page: " + ", ".join(missing)


def test_pages_name_only_real_functions():
    """A page must not document a function that does not exist (renamed, removed)."""
    api = api_functions()
    text = "\n".join(p.read_text() for p in PAGES)
    named = set(re.findall(r"^\.Fn (smtpc_[a-z0-9_]+)(?![\w*])", text, flags=re.M))
    named |= set(re.findall(r"^\.Fo (smtpc_[a-z0-9_]+)", text, flags=re.M))
    # A level whose header is not in this tree yet (documented ahead from its
    # branch) is checked once it is merged: skip nouns with no function here.
    nouns = {n.split("_")[1] for n in api}
    unknown = sorted(n for n in named - api if n.split("_")[1] in nouns)
    assert not unknown, "documented but not declared: " + ", ".join(unknown)


def link_flags():
    lib = BUILD_DIR / "libsmtpc.a"
    assert lib.exists(), f"not built: {lib}"
    r = subprocess.run(["pkg-config", "--libs", "openssl", "libidn2"],
                       capture_output=True, text=True, check=True)
    flags = [str(lib)] + r.stdout.split() + ["-lpthread"]
    if sanitized():  # an instrumented libsmtpc.a needs the sanitizer runtimes
        flags += ["-fsanitize=address,undefined"]
    return flags


def compile_example(src, out_dir):
    exe = out_dir / src.stem
    cmd = ["cc", "-std=c11", "-D_POSIX_C_SOURCE=200809L", "-Wall", "-Wextra", "-Werror",
           "-I", str(SOURCE_DIR / "include"), "-o", str(exe), str(src)] + link_flags()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, " ".join(cmd) + "\n" + r.stderr
    return exe


def skip_unless_api_here(src):
    """Examples of a level whose branch is not merged into this tree yet."""
    if "smtpc_bulk_" in src.read_text() and not (SOURCE_DIR / "include" / "smtpc" / "async.h").exists():
        pytest.skip("smtpc/async.h is not in this tree yet")


@pytest.mark.parametrize("src", EXAMPLES, ids=lambda p: p.name)
def test_example_compiles(src, tmp_path):
    skip_unless_api_here(src)
    compile_example(src, tmp_path)


def test_session_example_sends(aiosmtpd, tmp_path):  # noqa: F811
    exe = compile_example(SOURCE_DIR / "examples" / "send_session.c", tmp_path)
    srv = aiosmtpd(pipelining=True)
    r = subprocess.run([str(exe), "127.0.0.1", str(srv.port), "alice@example.org", "bob@example.com"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert len(srv.envelopes) == 1
    env = srv.envelopes[0]
    assert env.mail_from == "alice@example.org"
    assert env.rcpt_tos == ["bob@example.com"]
    assert b"Subject: Hello from libsmtpc\r\n" in env.data
    # un-dot-stuffed by the server: the leading dot survived, so it was stuffed
    assert env.data.endswith(b"\r\n.a line that starts with a dot\r\n")
    assert "250" in r.stdout  # the example prints the server's final reply


def test_session_example_reports_refusal(aiosmtpd, tmp_path):  # noqa: F811
    exe = compile_example(SOURCE_DIR / "examples" / "send_session.c", tmp_path)
    srv = aiosmtpd(refuse={"nobody@example.com"})
    r = subprocess.run([str(exe), "127.0.0.1", str(srv.port), "alice@example.org", "nobody@example.com"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stdout + r.stderr  # permanent: don't retry
    assert "SMTPC_EPERMFAIL" in r.stderr and "550" in r.stderr
    assert srv.envelopes == []


def test_message_example_sends(aiosmtpd, tmp_path):  # noqa: F811
    exe = compile_example(SOURCE_DIR / "examples" / "send_message.c", tmp_path)
    srv = aiosmtpd()
    att = tmp_path / "report.txt"
    att.write_bytes(b"quarterly numbers\n")
    r = subprocess.run([str(exe), "127.0.0.1", str(srv.port), "alice@example.org",
                        "bob@example.com", str(att)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert len(srv.envelopes) == 1
    env = srv.envelopes[0]
    assert env.mail_from == "alice@example.org"
    assert sorted(env.rcpt_tos) == ["bob@example.com", "carol@example.net"]  # To + Bcc
    import email
    import email.policy
    msg = email.message_from_bytes(env.data, policy=email.policy.default)
    assert msg["Subject"] == "Quarterly report \u2014 final"
    assert "Bcc" not in msg
    assert msg.get_content_type() == "multipart/mixed"
    parts = list(msg.iter_attachments())
    assert [p.get_filename() for p in parts] == ["report.txt"]
    assert parts[0].get_content() in ("quarterly numbers\n", "quarterly numbers\r\n")
    body = msg.get_body(preferencelist=("plain",))
    assert "Hello Bob" in body.get_content()
    assert msg["Message-ID"] and msg["Message-ID"] in r.stdout


ERR_PROBE = r"""
#include <smtpc/smtpc.h>
#include <stdio.h>
static const char *cls(smtpc_error_class c)
{
    switch (c) {
    case SMTPC_CLASS_OK: return "OK";
    case SMTPC_CLASS_TRANSIENT: return "TRANSIENT";
    case SMTPC_CLASS_PERMANENT: return "PERMANENT";
    case SMTPC_CLASS_CANCELED: return "CANCELED";
    case SMTPC_CLASS_CONFIG: return "CONFIG";
    case SMTPC_CLASS_PROTOCOL: return "PROTOCOL";
    case SMTPC_CLASS_UNKNOWN: return "UNKNOWN";
    }
    return "?";
}
int main(void)
{
    for (int c = -1; c >= -200; c--)
        if (smtpc_err_name(c)[0] && smtpc_err_name(c)[7] != '?')
            printf("%s %s\n", smtpc_err_name(c), cls(smtpc_error_classify(c)));
    return 0;
}
"""


def test_error_table_matches_the_library(tmp_path):
    """libsmtpc.3's table of codes and classes is what smtpc_error_classify says."""
    src = tmp_path / "probe.c"
    src.write_text(ERR_PROBE)
    out = subprocess.run([str(compile_example(src, tmp_path))], capture_output=True, text=True,
                         check=True).stdout
    lib = dict(line.split() for line in out.splitlines())
    page = (SOURCE_DIR / "docs" / "libsmtpc.3").read_text()
    doc = dict(re.findall(r"^\.It Dv (SMTPC_E[A-Z]+) Ta ([A-Z]+) Ta", page, flags=re.M))
    header = set(re.findall(r"\b(SMTPC_E[A-Z]+) = -\d+",
                            (SOURCE_DIR / "include" / "smtpc" / "errors.h").read_text()))
    assert set(lib) == header, "smtpc_err_name does not know every code of errors.h"
    assert doc == lib


def test_client_example_sends_over_one_connection(aiosmtpd, tmp_path):  # noqa: F811
    exe = compile_example(SOURCE_DIR / "examples" / "send_client.c", tmp_path)
    srv = aiosmtpd(pipelining=True, refuse={"nobody@example.com"})
    r = subprocess.run([str(exe), "127.0.0.1", str(srv.port), "alice@example.org",
                        "bob@example.com", "nobody@example.com"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert [e.rcpt_tos for e in srv.envelopes] == [["bob@example.com"]] * 2
    assert [e.mail_from for e in srv.envelopes] == ["alice@example.org"] * 2
    assert b"Subject: Client message 2\r\n" in srv.envelopes[1].data
    assert len(srv.ehlo_names) == 1  # the second send re-used the connection
    assert r.stdout.count("nobody@example.com: refused 550") == 2
    assert "re-used connection" in r.stdout


def test_bulk_example_sends(aiosmtpd, tmp_path):  # noqa: F811
    src = SOURCE_DIR / "examples" / "send_bulk.c"
    skip_unless_api_here(src)
    exe = compile_example(src, tmp_path)
    srv = aiosmtpd(pipelining=True)
    rcpts = ["r%d@example.com" % i for i in range(5)]
    r = subprocess.run([str(exe), "127.0.0.1", str(srv.port), "alice@example.org"] + rcpts,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert sorted(e.rcpt_tos[0] for e in srv.envelopes) == rcpts
    assert all(e.mail_from == "alice@example.org" and len(e.rcpt_tos) == 1 for e in srv.envelopes)
    assert all(e.data.endswith(b"\r\n\r\nOne of many.\r\n") for e in srv.envelopes)
    assert "5 sent, 0 failed, 0 unknown" in r.stdout


def test_async_example_sends(aiosmtpd, tmp_path):  # noqa: F811
    exe = compile_example(SOURCE_DIR / "examples" / "send_async.c", tmp_path)
    srv = aiosmtpd()
    r = subprocess.run([str(exe), "127.0.0.1", str(srv.port), "alice@example.org", "bob@example.com"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert [(e.mail_from, e.rcpt_tos) for e in srv.envelopes] == [("alice@example.org", ["bob@example.com"])]
    assert b"Subject: Sent in the background\r\n" in srv.envelopes[0].data
    assert r.stdout.startswith("sent <") and " 250 " in r.stdout


def test_overview_session_program_compiles(tmp_path):
    """The complete program under EXAMPLES/Session in libsmtpc(3) compiles as printed."""
    page = (SOURCE_DIR / "docs" / "libsmtpc.3").read_text()
    m = re.search(r"^\.Ss Session\n\.Bd -literal[^\n]*\n(.*?)^\.Ed$", page, flags=re.S | re.M)
    assert m, "no Session example in libsmtpc.3"
    code = m.group(1).replace("\\e", "\\")
    assert "int main(" in code
    src = tmp_path / "overview_session.c"
    src.write_text(code)
    compile_example(src, tmp_path)


def test_pages_are_installed(tmp_path):
    r = subprocess.run(["cmake", "--install", str(BUILD_DIR), "--prefix", str(tmp_path)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    installed = {p.name for p in tmp_path.glob("share/man/man3/*.3")}
    assert {p.name for p in PAGES} <= installed


def _norm(params):
    params = re.sub(r"\s+", " ", params).strip()
    return re.sub(r"\s*([*(),\[\]])\s*", r"\1", params)


def header_prototypes():
    """{name: normalised parameter list} of every SMTPC_API function."""
    out = {}
    for h in HEADERS:
        text = re.sub(r"/\*.*?\*/", " ", h.read_text(), flags=re.S)
        text = re.sub(r"^\s*#.*$", " ", text, flags=re.M)
        for m in re.finditer(r"SMTPC_API\b[^;{]*?\b([a-z_][a-z0-9_]*)\s*\((.*?)\)\s*;", text, flags=re.S):
            out[m.group(1)] = _norm(m.group(2))
    return out


def page_prototypes():
    """{name: parameter list} from the first .Fn (with quoted arguments) or .Fo of each name."""
    out = {}
    for p in PAGES:
        lines = p.read_text().splitlines()
        i = 0
        while i < len(lines):
            line = lines[i]
            if line.startswith(".Fn "):
                toks = [a or b for a, b in re.findall(r'"([^"]*)"|(\S+)', line[4:])]
                if len(toks) > 1 and ('"' in line or toks[1] == "void"):
                    out.setdefault(toks[0], _norm(",".join(toks[1:])))
            elif line.startswith(".Fo "):
                name, args = line[4:].strip(), []
                i += 1
                while not lines[i].startswith(".Fc"):
                    args.append(lines[i][4:].strip().strip('"'))
                    i += 1
                out.setdefault(name, _norm(",".join(args)))
            i += 1
    return out


def test_synopsis_matches_the_headers():
    """Every public function has a prototype in a SYNOPSIS, and it is the header's."""
    decl, doc = header_prototypes(), page_prototypes()
    assert len(decl) == len(api_functions())
    missing = sorted(set(decl) - set(doc))
    assert not missing, "no prototype in any docs/*.3 page: " + ", ".join(missing)
    wrong = ["%s:\n  header: %s\n  page:   %s" % (n, decl[n], doc[n])
             for n in sorted(decl) if doc[n] != decl[n]]
    assert not wrong, "prototype differs from the header:\n" + "\n".join(wrong)


def test_smtpc_1_describes_the_bulk_options():
    """The options only bulk sending has (in the option table of cli/args.c:
    accepted by bulk, not by probe) are described in the bulk section of
    smtpc(1), and the page renders cleanly."""
    page = SOURCE_DIR / "docs" / "smtpc.1"
    r = subprocess.run(["groff", "-mandoc", "-ww", "-Tutf8", str(page)], capture_output=True)
    assert r.returncode == 0 and r.stderr == b"", r.stderr.decode(errors="replace")
    text = page.read_text()
    m = re.search(r"^\.Ss bulk$(.*?)^\.S[sh] ", text, flags=re.S | re.M)
    assert m, "smtpc.1 has no bulk section"
    section = m.group(1)
    table = (SOURCE_DIR / "cli" / "args.c").read_text()
    opts = {name for name, cmds in re.findall(r'\{"--([a-z-]+)", O_\w+, OK_\w+, ([^,]+),', table)
            if re.search(r"\bB\b", cmds) and not re.search(r"\bP\b|NET", cmds)}
    assert {"dir", "rate", "max-per-connection"} <= opts, opts
    missing = sorted(o for o in opts if not re.search(r"\.(?:It )?Fl -%s\b" % re.escape(o), section)
                     and "Fl -" + o not in section)
    assert missing == [], missing


# ---- the repository stands alone, and its structure is what
# ---- docs/ARCHITECTURE.md says

def _repo_docs():
    """The documentation a reader of a clone follows pointers in."""
    files = [SOURCE_DIR / "README.md", SOURCE_DIR / "bench" / "README.md"]
    files += sorted((SOURCE_DIR / "bench").glob("*.py"))
    files += sorted(p for p in (SOURCE_DIR / "docs").rglob("*") if p.is_file())
    return [p for p in files if p.exists()]


def test_docs_point_only_inside_the_repository():
    """No pointer to a path outside the repository (a workspace's notes):
    a clone would have nothing there. The architecture is in the tree."""
    bad = []
    for p in _repo_docs():
        for n, line in enumerate(p.read_text(errors="replace").splitlines(), 1):
            if "/work/" in line or "shared/" in line:
                bad.append(f"{p.relative_to(SOURCE_DIR)}:{n}: {line.strip()}")
    assert not bad, "pointers outside the repository:\n" + "\n".join(bad)
    assert (SOURCE_DIR / "docs" / "ARCHITECTURE.md").exists()
    for p in ("README.md", "docs/HACKING.md"):
        assert "docs/ARCHITECTURE.md" in (SOURCE_DIR / p).read_text(), p


def _strip_c(text):
    """C text without comments, string/char literals and preprocessor lines
    (newlines kept, so line numbers hold)."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append("\n" * text.count("\n", i, j))
            i = j
        elif text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" else 1
            out.append(c + c)
            i = j + 1
        else:
            out.append(c)
            i += 1
    text = "".join(out)
    # preprocessor lines, continuations included
    return re.sub(r"^[ \t]*#(?:[^\n]*\\\n)*[^\n]*", "", text, flags=re.M)


def _drop_attributes(s):
    """s without __attribute__((...)) (balanced parentheses)."""
    while True:
        k = s.find("__attribute__")
        if k < 0:
            return s
        j, depth = s.find("(", k), 0
        if j < 0:
            return s[:k]
        for e in range(j, len(s)):
            depth += {"(": 1, ")": -1}.get(s[e], 0)
            if depth == 0:
                break
        s = s[:k] + " " + s[e + 1:]


_PROTO = re.compile(r"^(?P<ret>[A-Za-z_][\w\s*]*?[\s*])(?P<name>[A-Za-z_]\w*)\s*\((?P<args>.*)\)$", re.S)


def file_scope_prototypes(text):
    """(line, name) of every non-static function declaration without a body
    at file scope of a C file."""
    text = _strip_c(text)
    found, depth, start, stmt = [], 0, 0, []
    for i, c in enumerate(text):
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0 and re.search(r"\)\s*$", "".join(stmt)):
                stmt, start = [], i + 1  # a function definition ends here
            continue
        if depth:
            continue
        if c == ";":
            s = " ".join(_drop_attributes("".join(stmt)).split())
            m = _PROTO.match(s)
            if m and "=" not in s and not re.search(r"\b(static|typedef)\b", m.group("ret")):
                raw = "".join(stmt)
                line = text.count("\n", 0, start + len(raw) - len(raw.lstrip())) + 1
                found.append((line, m.group("name")))
            stmt, start = [], i + 1
        elif c != "{":
            stmt.append(c)
    return found


# Prototypes inside .c files that another branch is removing: "path": {names}.
# Empty when this check was added (2026-12): the lead empties any entry once
# the fix is merged. Do not add to it: put the declaration in a header of its
# module, or make the function static.
PROTOTYPE_ALLOWED = {
}


def test_c_files_declare_no_prototypes():
    """A .c file that declares another file's function hides the dependency
    from the headers (a changed signature still builds, then misbehaves), and
    one that declares its own non-static function only quiets
    -Wmissing-prototypes: declarations shared between files live in a header
    of their module (docs/ARCHITECTURE.md, "Who may include whom")."""
    bad = []
    for p in sorted((SOURCE_DIR / "src").rglob("*.c")):
        rel = str(p.relative_to(SOURCE_DIR))
        for line, name in file_scope_prototypes(p.read_text()):
            if name not in PROTOTYPE_ALLOWED.get(rel, ()):
                bad.append(f"{rel}:{line}: {name}")
    assert not bad, "prototypes declared in .c files:\n" + "\n".join(bad)


def test_prototype_finder_finds_them():
    """The check above is not vacuous."""
    src = ("#include \"x.h\"\n/* int in_comment(void); */\n"
           "int other_file(smtpc_message_writer *w, const void *p, size_t n);\n"
           "static int helper(int);\ntypedef int (*fn)(void);\n"
           "smtpc_message *\nsmtpc__writer_message(smtpc_message_writer *w);\n"
           "__attribute__((format(printf, 1, 2))) void logf(const char *f, ...);\n"
           "int (*hook)(void) = 0;\nstruct s { int (*f)(void); };\n"
           "int defined(void) { return helper(1); }\n"
           "static int helper(int x) { const char *s = \"a(b);\"; return x + (int)s[0]; }\n")
    assert file_scope_prototypes(src) == [(3, "other_file"), (6, "smtpc__writer_message"), (8, "logf")]


# Which module of src/ may include which (docs/ARCHITECTURE.md); every module
# may include <smtpc/*.h>.
LAYERS = {
    "util": set(),
    "engine": {"util"},
    "net": {"util"},
    "mime": {"util"},
    "conn": {"engine", "net", "util"},
    "client": {"engine", "net", "conn", "mime", "util"},
    "async": {"engine", "net", "conn", "mime", "util"},
    "lazy": {"util"},
    "dkim": {"util"},
    "cli": set(),
}
# Includes across the layers that are being removed: ("file", "included").
# The lead empties an entry once its fix is merged. Do not add to it.
INCLUDE_ALLOWED: set = set()  # (file, include) pairs allowed against the layers; keep it empty


def test_includes_follow_the_layers():
    bad = []
    files = [p for p in (SOURCE_DIR / "src").rglob("*") if p.suffix in (".c", ".h")]
    files += [p for p in (SOURCE_DIR / "cli").glob("*") if p.suffix in (".c", ".h")]
    assert len(files) > 50
    for p in sorted(files):
        rel = p.relative_to(SOURCE_DIR)
        mod = rel.parts[0] if rel.parts[0] == "cli" else rel.parts[1]
        assert mod in LAYERS, f"{rel}: a new module: add it to LAYERS and docs/ARCHITECTURE.md"
        for inc in re.findall(r'^\s*#\s*include\s+"([^"]+)"', p.read_text(), flags=re.M):
            if "/" not in inc:
                continue  # a header beside the file
            target = inc.split("/")[0]
            if target == mod or target in LAYERS[mod] or (str(rel), inc) in INCLUDE_ALLOWED:
                continue
            bad.append(f"{rel}: {mod} includes {inc}")
    assert not bad, "includes against the layers (docs/ARCHITECTURE.md):\n" + "\n".join(bad)
