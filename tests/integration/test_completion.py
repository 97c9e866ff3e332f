"""bash and zsh completion: generated from the option table (cli/args.c) by
`smtpc completion bash|zsh`, written by the build, installed by make install.
Every option of the table is completed for its commands, option values are
ones smtpc accepts, account names come from the configuration."""
import os
import pathlib
import re
import shutil
import subprocess

import pytest

from conftest import BUILD_DIR

SRC = pathlib.Path(__file__).resolve().parents[2]
COMMANDS = ["send", "bulk", "probe", "queue", "config"]  # those whose help lists the table's options


def table_options():
    text = (SRC / "cli" / "args.c").read_text()
    names = re.findall(r'^\s*\{"(-[-A-Za-z0-9]+)", O_', text, re.M)
    assert len(names) > 40
    return set(names)


def env_for(tmp_path, smtpc_bin):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMTPC_")}
    env["HOME"] = str(tmp_path / "home")
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")
    (tmp_path / "home").mkdir(exist_ok=True)
    env["PATH"] = str(pathlib.Path(smtpc_bin).parent) + os.pathsep + env.get("PATH", "")
    return env


def bash_complete(script, words, env):
    """COMPREPLY for the words, the last one being completed."""
    quoted = " ".join("'" + w.replace("'", "'\\''") + "'" for w in words)
    prog = f"source '{script}'\nCOMP_WORDS=({quoted})\nCOMP_CWORD={len(words) - 1}\n_smtpc\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n"
    r = subprocess.run(["bash", "--norc", "--noprofile", "-c", prog], capture_output=True, text=True,
                       env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    return set(x for x in r.stdout.split("\n") if x)


@pytest.fixture
def bash_script(smtpc_bin, tmp_path):
    p = tmp_path / "smtpc.bash"
    r = subprocess.run([smtpc_bin, "completion", "bash", str(p)], capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return p


def help_options(smtpc_bin, cmd):
    out = subprocess.run([smtpc_bin, "help", cmd], capture_output=True, text=True, timeout=30).stdout
    return set(re.findall(r"^  (-[-A-Za-z0-9]+)", out, re.M))


def test_build_writes_the_generated_scripts(smtpc_bin):
    for shell, name in (("bash", "smtpc"), ("zsh", "_smtpc")):
        built = BUILD_DIR / "completions" / name
        assert built.exists(), f"the build did not write {built}"
        now = subprocess.run([smtpc_bin, "completion", shell], capture_output=True, timeout=30).stdout
        assert built.read_bytes() == now


def test_bash_completes_every_option_of_the_table(smtpc_bin, bash_script, tmp_path):
    env = env_for(tmp_path, smtpc_bin)
    seen = set()
    for cmd in COMMANDS:
        got = bash_complete(bash_script, ["smtpc", cmd, "-"], env)
        assert got == help_options(smtpc_bin, cmd), cmd
        seen |= got
    got = bash_complete(bash_script, ["smtpc", "sendmail", "--"], env)
    seen |= got
    assert {"--account", "--config", "--trace"} <= got
    assert seen == table_options()
    # prefixes narrow
    assert bash_complete(bash_script, ["smtpc", "send", "--tls-m"], env) == {"--tls-min", "--tls-max"}


def test_bash_subcommands_and_words(smtpc_bin, bash_script, tmp_path):
    env = env_for(tmp_path, smtpc_bin)
    subs = bash_complete(bash_script, ["smtpc", ""], env)
    assert {"send", "bulk", "probe", "queue", "sendmail", "config", "help"} <= subs
    assert "completion" not in subs  # hidden
    usage = subprocess.run([smtpc_bin, "help"], capture_output=True, text=True, timeout=30).stdout
    assert set(re.findall(r"^\s*(?:usage: )?smtpc ([a-z]+)", usage, re.M)) <= subs  # every command of the usage
    assert bash_complete(bash_script, ["smtpc", "queue", ""], env) == {"list", "flush", "retry", "drop"}
    assert bash_complete(bash_script, ["smtpc", "config", "i"], env) == {"import-msmtp"}
    (tmp_path / "my.msmtprc").write_text("")
    assert "my.msmtprc" in bash_complete(bash_script, ["smtpc", "config", "import-msmtp", "my"], env) | {
        p.rsplit("/", 1)[-1] for p in bash_complete(bash_script, ["smtpc", "config", "import-msmtp", str(tmp_path / "my")], env)}


@pytest.mark.parametrize("opt,expect", [
    ("--tls", {"auto", "implicit", "tls", "starttls", "starttls-optional", "none"}),
    ("--auth", {"plain", "login", "cram-md5", "scram-sha-1", "scram-sha-256", "xoauth2", "oauthbearer", "external"}),
    ("--delivery", {"smtp", "pickup", "outbox"}),
    ("--tls-min", {"1.0", "1.1", "1.2", "1.3"}),
])
def test_bash_option_values_are_accepted_by_smtpc(smtpc_bin, bash_script, tmp_path, opt, expect):
    env = env_for(tmp_path, smtpc_bin)
    got = bash_complete(bash_script, ["smtpc", "send", opt, ""], env)
    assert got == expect
    for v in got:
        # the same checks as configuration values: a value smtpc refuses is exit 64
        r = subprocess.run([smtpc_bin, "send", "--dump", "--from", "a@example.org", "--to", "b@example.org",
                            "--text", "x", opt, v], capture_output=True, env=env, cwd=tmp_path, timeout=30)
        assert r.returncode == 0, (opt, v, r.stderr)


def test_bash_files_for_file_options(smtpc_bin, bash_script, tmp_path):
    env = env_for(tmp_path, smtpc_bin)
    (tmp_path / "body-one.txt").write_text("x")
    prefix = str(tmp_path / "body-")
    assert bash_complete(bash_script, ["smtpc", "send", "--text-file", prefix], env) == {prefix + "one.txt"}
    assert bash_complete(bash_script, ["smtpc", "send", "--server", prefix], env) == set()


def test_bash_account_names_from_the_configuration(smtpc_bin, bash_script, tmp_path):
    env = env_for(tmp_path, smtpc_bin)
    rc = tmp_path / "home" / ".smtpcrc"
    rc.write_text("default = work\n[account work]\nserver = a.example\n[account home]\nserver = b.example\n")
    os.chmod(rc, 0o600)
    assert bash_complete(bash_script, ["smtpc", "send", "--account", ""], env) == {"work", "home"}
    other = tmp_path / "other.rc"
    other.write_text("account first\nhost a.example\naccount second\nhost b.example\n")  # msmtp syntax
    os.chmod(other, 0o600)
    assert bash_complete(bash_script, ["smtpc", "probe", "--config", str(other), "--account", "s"], env) == {"second"}


@pytest.mark.skipif(not shutil.which("zsh"), reason="zsh not installed")
def test_zsh_script_parses_and_has_every_option(smtpc_bin, tmp_path):
    p = tmp_path / "_smtpc"
    assert subprocess.run([smtpc_bin, "completion", "zsh", str(p)], timeout=30).returncode == 0
    r = subprocess.run(["zsh", "-n", str(p)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    text = p.read_text()
    assert text.startswith("#compdef smtpc\n")
    blocks = dict(re.findall(r"^  ([a-z]+)\)\n    _arguments -s(.*?)\n    ;;", text, re.M | re.S))
    for cmd in COMMANDS:
        opts = set(re.findall(r"'\*?(-[-A-Za-z0-9]+)\[", blocks[cmd]))
        assert opts == help_options(smtpc_bin, cmd), cmd
    every = set()
    for b in blocks.values():
        every |= set(re.findall(r"'\*?(-[-A-Za-z0-9]+)\[", b))
    assert every == table_options()
    assert "(auto implicit tls starttls starttls-optional none)" in blocks["send"]
    assert ":_smtpc_accounts'" in blocks["send"]


@pytest.mark.skipif(not shutil.which("zsh"), reason="zsh not installed")
def test_zsh_account_helper_lists_the_configuration(smtpc_bin, tmp_path):
    """The zsh script's account helper, run by zsh with _describe replaced by
    a printer (the full completion system needs a terminal)."""
    env = env_for(tmp_path, smtpc_bin)
    p = tmp_path / "_smtpc"
    subprocess.run([smtpc_bin, "completion", "zsh", str(p)], check=True, timeout=30)
    other = tmp_path / "other.rc"
    other.write_text("[account alpha]\nserver = a.example\n[account beta]\nserver = b.example\n")
    os.chmod(other, 0o600)
    prog = (f"source {p} 2>/dev/null; _describe() {{ print -rl -- ${{(P)${{@[-1]}}}} }}; "
            f"words=(send --config {other} --account ''); _smtpc_prog=smtpc; _smtpc_accounts")
    r = subprocess.run(["zsh", "-f", "-c", prog], capture_output=True, text=True, env=env, timeout=60)
    assert set(r.stdout.split()) == {"alpha", "beta"}, (r.stdout, r.stderr)


def test_install_puts_the_scripts_where_the_shells_look(tmp_path):
    stage = tmp_path / "stage"
    r = subprocess.run(["cmake", "--install", str(BUILD_DIR), "--prefix", "/usr"], capture_output=True,
                       text=True, env=dict(os.environ, DESTDIR=str(stage)), timeout=300)
    assert r.returncode == 0, r.stderr
    bash = stage / "usr/share/bash-completion/completions/smtpc"
    zsh = stage / "usr/share/zsh/site-functions/_smtpc"
    assert bash.read_bytes() == (BUILD_DIR / "completions" / "smtpc").read_bytes()
    assert zsh.read_bytes() == (BUILD_DIR / "completions" / "_smtpc").read_bytes()
    assert b"complete -F _smtpc smtpc" in bash.read_bytes()
    # bash-completion's own loader finds it there (on demand, by command name)
    loader = pathlib.Path("/usr/share/bash-completion/bash_completion")
    if loader.exists():
        r = subprocess.run(["bash", "--norc", "--noprofile", "-c",
                            f"source {loader}; __load_completion smtpc; complete -p smtpc"],
                           capture_output=True, text=True, timeout=60,
                           env=dict(os.environ, XDG_DATA_DIRS=str(stage / "usr/share")))
        assert r.stdout.strip() == "complete -F _smtpc smtpc", r.stderr


ZSH_DRIVER = r"""
zmodload zsh/zpty
zpty z zsh -f -i
zpty -w z "PS1='> '; LISTMAX=100000; fpath=(${FDIR} \$fpath); autoload -Uz compinit; compinit -u -D; setopt autolist nolistambiguous; stty rows 500 cols 200"
zpty -w z 'print READ""Y'
wait_for() {  # read until the output has $1 or 30 s passed
  local out="" line; integer end=$(( SECONDS + 30 ))
  while (( SECONDS < end )); do
    zpty -r -t z line && out+=$line || sleep 0.1
    [[ $out == *$1* ]] && break
  done
  REPLY=$out
}
wait_for READY
try() {  # $1: the line typed, then TAB; $2: a word the answer must contain
  zpty -n -w z "$1"$'\t'
  wait_for "$2"
  print -r -- "=== $1"
  print -r -- "$REPLY"
  print -r -- "=== end"
  zpty -n -w z $'\C-u'$'\n'
  wait_for '> '
}
"""


@pytest.mark.skipif(not shutil.which("zsh"), reason="zsh not installed")
def test_zsh_completes_for_real(smtpc_bin, tmp_path):
    """zsh's completion system with the generated _smtpc, driven through a
    pseudo-terminal (zsh/zpty): what a user sees after TAB."""
    env = env_for(tmp_path, smtpc_bin)
    fdir = tmp_path / "fpath"
    fdir.mkdir()
    subprocess.run([smtpc_bin, "completion", "zsh", str(fdir / "_smtpc")], check=True, timeout=30)
    rc = tmp_path / "home" / ".smtpcrc"
    rc.write_text("[account alpha]\nserver = a.example\n[account beta]\nserver = b.example\n")
    os.chmod(rc, 0o600)
    cases = [("smtpc send --tls-m", "--tls-min"), ("smtpc send --tls s", "starttls-optional"),
             ("smtpc qu", "queue"), ("smtpc send --account ", "beta"), ("smtpc probe --", "--user ")]
    script = ZSH_DRIVER.replace("${FDIR}", str(fdir)) + "".join(
        f"try '{line}' '{want}'\n" for line, want in cases) + "zpty -d z\n"
    r = subprocess.run(["zsh", "-f", "-c", script], capture_output=True, text=True, env=env, timeout=300)
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\r", "", r.stdout)
    got = dict(re.findall(r"^=== (.*?)\n(.*?)\n=== end$", plain, re.M | re.S))
    assert set(got) == {line for line, _ in cases}, plain
    assert "--tls-min" in got["smtpc send --tls-m"] and "--tls-max" in got["smtpc send --tls-m"]
    assert "starttls-optional" in got["smtpc send --tls s"]
    assert "smtpc queue" in got["smtpc qu"]
    assert "alpha" in got["smtpc send --account "] and "beta" in got["smtpc send --account "]
    listed = set(re.findall(r"(?<![\w-])(--?[a-z0-9][-a-z0-9]*)", got["smtpc probe --"]))
    want = {o for o in help_options(smtpc_bin, "probe") if o.startswith("--")}
    assert want <= listed, want - listed
