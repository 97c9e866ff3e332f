"""cmake --install gives a usable package: headers, shared and static
libraries, pkg-config file, CMake package config; only the public API is
exported from the shared library."""
import os
import pathlib
import re
import subprocess

from conftest import BUILD_DIR, SOURCE_DIR

CONSUMER_C = r'''
#include <smtpc/smtpc.h>
#include <stdio.h>
#include <string.h>
int main(void) {
    if (strcmp(smtpc_version(), SMTPC_VERSION_STRING) != 0) return 1;
    printf("%s %s\n", smtpc_version(), smtpc_err_name(SMTPC_ETIMEDOUT));
    return 0;
}
'''


def sh(*args, **kw):
    r = subprocess.run(args, capture_output=True, text=True, timeout=300, **kw)
    assert r.returncode == 0, f"{args}: {r.stdout}\n{r.stderr}"
    return r.stdout


def sanitizer_flags():
    """A sanitized libsmtpc needs a consumer built with the same runtime."""
    cache = (BUILD_DIR / "CMakeCache.txt").read_text()
    return ["-fsanitize=address,undefined"] if "SMTPC_SANITIZE:BOOL=ON" in cache else []


def installed(tmp_path):
    prefix = tmp_path / "prefix"
    sh("cmake", "--install", str(BUILD_DIR), "--prefix", str(prefix))
    return prefix


def test_install_layout_and_find_package(tmp_path):
    prefix = installed(tmp_path)
    assert (prefix / "include/smtpc/smtpc.h").exists()
    libdir = next(p for p in [prefix / "lib", *prefix.glob("lib/*")] if (p / "pkgconfig/smtpc.pc").exists())
    assert any(libdir.glob("libsmtpc.so.0*")), "versioned SONAME missing"
    assert (libdir / "libsmtpc.a").exists()
    assert (libdir / "cmake/smtpc/smtpcConfig.cmake").exists()
    assert (prefix / "bin/smtpc").exists()

    proj = tmp_path / "consumer"
    proj.mkdir()
    (proj / "main.c").write_text(CONSUMER_C)
    (proj / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.20)\nproject(consumer C)\n"
        "find_package(smtpc 0.1 REQUIRED)\nadd_executable(consumer main.c)\n"
        "target_link_libraries(consumer PRIVATE smtpc::smtpc)\n")
    san = " ".join(sanitizer_flags())
    sh("cmake", "-S", str(proj), "-B", str(proj / "b"), f"-DCMAKE_PREFIX_PATH={prefix}",
       f"-DCMAKE_C_FLAGS={san}", f"-DCMAKE_EXE_LINKER_FLAGS={san}")
    sh("cmake", "--build", str(proj / "b"))
    env = dict(os.environ, LD_LIBRARY_PATH=str(libdir))
    out = sh(str(proj / "b/consumer"), env=env)
    assert out.strip() == "0.1.0 SMTPC_ETIMEDOUT"

    # pkg-config route
    env = dict(os.environ, PKG_CONFIG_PATH=str(libdir / "pkgconfig"))
    flags = sh("pkg-config", "--cflags", "--libs", "smtpc", env=env).split()
    sh("cc", "-std=c11", *sanitizer_flags(), "-o", str(tmp_path / "pc"), str(proj / "main.c"), *flags)
    out = sh(str(tmp_path / "pc"), env=dict(os.environ, LD_LIBRARY_PATH=str(libdir)))
    assert out.startswith("0.1.0")


def test_only_public_symbols_exported():
    so = pathlib.Path(BUILD_DIR) / "libsmtpc.so"
    out = sh("nm", "-D", "--defined-only", str(so))
    syms = [l.split()[-1] for l in out.splitlines() if l.split()[1:2] and l.split()[1] in "TDBR"]
    assert "smtpc_version" in syms
    bad = [s for s in syms if not s.startswith("smtpc_") or s.startswith("smtpc__")]
    assert not bad, f"non-public symbols exported: {bad[:20]}"


def test_make_install_destdir_prefix_usr(tmp_path):
    """As a packager: make install DESTDIR=stage PREFIX=/usr puts everything
    under stage/usr, the installed CLI runs from there (it finds its
    libsmtpc.so next to it, not the build tree's), and an outside program
    builds against the staged tree both ways: pkg-config, and the static
    archive with OpenSSL and libidn2 linked by the program itself."""
    stage = tmp_path / "stage"
    r = subprocess.run(["make", "--no-print-directory", "install", f"BUILD={BUILD_DIR}",
                        f"DESTDIR={stage}", "PREFIX=/usr"], cwd=SOURCE_DIR, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    usr = stage / "usr"
    assert (usr / "include/smtpc/conn.h").exists()
    assert (usr / "share/man/man1/smtpc.1").exists()
    pcs = list(usr.glob("lib*/**/pkgconfig/smtpc.pc")) + list(usr.glob("lib*/pkgconfig/smtpc.pc"))
    assert pcs, sorted(str(p) for p in usr.rglob("*"))[:50]
    libdir = pcs[0].parent.parent
    assert any(libdir.glob("libsmtpc.so.0*")) and (libdir / "libsmtpc.a").exists()

    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    env.update(SMTPC_CONFIG="/dev/null", HOME=str(tmp_path))
    exe = usr / "bin/smtpc"
    if not sanitizer_flags():
        ldd = sh("ldd", str(exe), env=env)
        found = re.search(r"libsmtpc\.so\.0 => (\S+)", ldd)
        assert found and os.path.realpath(found.group(1)).startswith(os.path.realpath(libdir)), ldd
        assert sh(str(exe), "--version", env=env).strip()

    src = tmp_path / "main.c"
    src.write_text(CONSUMER_C)
    pcenv = dict(os.environ, PKG_CONFIG_PATH=str(libdir / "pkgconfig"))
    flags = sh("pkg-config", "--cflags", "--libs", "smtpc", env=pcenv).split()
    sh("cc", "-std=c11", *sanitizer_flags(), "-o", str(tmp_path / "dyn"), str(src), *flags)
    out = sh(str(tmp_path / "dyn"), env=dict(os.environ, LD_LIBRARY_PATH=str(libdir)))
    assert out.strip() == "0.1.0 SMTPC_ETIMEDOUT"

    cflags = sh("pkg-config", "--cflags", "smtpc", env=pcenv).split()
    deps = sh("pkg-config", "--libs", "openssl", "libidn2").split()
    sh("cc", "-std=c11", *sanitizer_flags(), "-o", str(tmp_path / "static"), str(src), *cflags,
       str(libdir / "libsmtpc.a"), *deps, "-lpthread")
    assert sh(str(tmp_path / "static")).strip() == "0.1.0 SMTPC_ETIMEDOUT"
