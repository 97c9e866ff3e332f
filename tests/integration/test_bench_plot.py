"""bench/plot.py: the committed charts come from bench/results.json and one
command regenerates them, byte for byte.

Renders bench/results.json into a temporary directory (never into bench/) and
checks: every chart of plot.CHARTS is written, is well-formed SVG and names
every client of its dataset; a second rendering gives identical bytes; the
committed bench/*.svg are what the committed data renders to (when this is the
matplotlib they were rendered with: the SVG records it); `plot.py RESULTS_DIR`
takes a bench/run_all.sh table (NAME.json, as benchlib.write_json writes it)
in place of the committed one; and the charts the READMEs show exist.
Skipped when matplotlib (Debian's python3-matplotlib) is missing.
"""
import json
import os
import pathlib
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

pytest.importorskip("matplotlib")
import matplotlib  # noqa: E402

ROOT = pathlib.Path(os.environ.get("SMTPC_SOURCE_DIR", pathlib.Path(__file__).resolve().parents[2]))
BENCH = ROOT / "bench"
PLOT = BENCH / "plot.py"
DATA = BENCH / "results.json"
sys.path.insert(0, str(BENCH))
import benchlib  # noqa: E402
import plot  # noqa: E402


def render(out, *args, data=DATA):
    p = subprocess.run([sys.executable, str(PLOT), *args, "--data", str(data), "--out", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    return p


def clients(ds):
    names = [r["client"] for r in ds["rows"]]
    for later in ds.get("later", []):
        names += [r["client"] for r in later["rows"]]
    return names


def svg_text(path):
    """Every text the SVG shows (svg.fonttype none: text stays <text>)."""
    tree = ET.parse(path)
    return "\n".join("".join(t.itertext()) for t in tree.iter("{http://www.w3.org/2000/svg}text"))


@pytest.fixture(scope="module")
def data():
    with open(DATA, encoding="utf-8") as f:
        return json.load(f)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    a, b = tmp_path_factory.mktemp("a"), tmp_path_factory.mktemp("b")
    render(a)
    render(b)
    return a, b


def test_every_chart_written_and_names_its_clients(data, rendered):
    a, _ = rendered
    for name, key, _fn in plot.CHARTS:
        assert key in data["datasets"], f"{name}: dataset {key} missing from bench/results.json"
        path = a / name
        assert path.exists(), name
        text = svg_text(path)
        for c in clients(data["datasets"][key]):
            assert re.search(rf"(^|\W){re.escape(c)}($|\W)", text, re.M), f"{name} does not name {c}"


def test_rendering_is_deterministic(rendered):
    a, b = rendered
    for name, _key, _fn in plot.CHARTS:
        assert (a / name).read_bytes() == (b / name).read_bytes(), f"{name} differs between two renderings"


def test_committed_charts_match_the_data(rendered):
    a, _ = rendered
    mine = f"(matplotlib {matplotlib.__version__})"
    for name, _key, _fn in plot.CHARTS:
        committed = BENCH / name
        assert committed.exists(), f"bench/{name} is not committed: run bench/plot.py"
        if mine not in committed.read_text(encoding="utf-8"):
            pytest.skip(f"bench/{name} was rendered with another matplotlib than {matplotlib.__version__}")
        assert committed.read_bytes() == (a / name).read_bytes(), \
            f"bench/{name} is not what bench/results.json renders to: run bench/plot.py"


def test_results_dir_replaces_a_dataset(tmp_path, data):
    results = tmp_path / "20261207T000000Z"
    results.mkdir()
    rows = [dict(client="bulk", mb_s=500, wall_s=0.21, cpu_s=0.04, rss_mb=3.6),
            dict(client="smtpc-send", mb_s=480, wall_s=0.22, cpu_s=0.05, rss_mb=4.1),
            dict(client="curl", mb_s=450, wall_s=0.23, cpu_s=0.10, rss_mb=10.9)]
    benchlib.write_json(str(results / "big.json"), "One message of 100 MiB (test)", "2026-12-07 00:00 UTC",
                        "2026-12-07 00:01 UTC", rows)
    copy = tmp_path / "results.json"
    copy.write_text(DATA.read_text(encoding="utf-8"), encoding="utf-8")
    out = tmp_path / "out"
    render(out, str(results), data=copy)
    new = json.loads(copy.read_text(encoding="utf-8"))
    big = new["datasets"]["big"]
    assert big["rows"] == rows and "later" not in big
    assert big["source"].endswith("20261207T000000Z, big.json")
    for key, ds in data["datasets"].items():
        if key != "big":
            assert new["datasets"][key] == ds, f"{key} changed"
    text = svg_text(out / "big.svg")
    assert "smtpc-send" in text and "smtplib" not in text and "480 MB/s" in text
    render(tmp_path / "again", data=copy)  # the rewritten data file renders as it is
    assert (tmp_path / "again" / "big.svg").read_bytes() == (out / "big.svg").read_bytes()


def test_readmes_show_committed_charts():
    charts = {name for name, _key, _fn in plot.CHARTS}
    for readme, prefix in ((ROOT / "README.md", "bench/"), (BENCH / "README.md", "")):
        shown = re.findall(r"\]\((" + re.escape(prefix) + r"[\w-]+\.svg)\)", readme.read_text(encoding="utf-8"))
        assert shown, f"{readme.name} shows no chart"
        for s in shown:
            assert s[len(prefix):] in charts, f"{readme.name} shows {s}, which bench/plot.py does not render"
