#!/usr/bin/python3
"""Renders bench/README.md's figures as SVG charts (Debian's python3-matplotlib).

  bench/plot.py                   re-renders bench/*.svg from bench/results.json
  bench/plot.py RESULTS_DIR       first replaces the datasets of bench/results.json
                                  that RESULTS_DIR measured (bench/run_all.sh writes
                                  NAME.json beside each NAME.md), then re-renders
  options: --data FILE (default bench/results.json), --out DIR (default bench/)

bench/results.json holds, per table ("dataset": throughput, tls, oneshot,
oneshot-tls, big), the command, the machine state before and after, the commit
and one row per client, rounded as the tables print them. The output is
deterministic (fixed SVG ids, no date): re-rendering unchanged data with the
same matplotlib gives the same bytes, so a chart only changes in git when its
figures do.

Adding a chart (e.g. the PostgreSQL queue's scaling, once a script measures
it): make the script write its table with benchlib.write_json (--json FILE),
give it a NAME in bench/run_all.sh (`--json "$out/NAME.json"`), write a
function fig(ds) -> matplotlib Figure below and add (file, NAME, function) to
CHARTS. A chart whose dataset is missing is skipped.
"""
import argparse
import json
import os
import re
import sys
import textwrap
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE / "results.json"

SMTPC = "#1f6fb4"   # smtpc's own clients (library drivers and the CLI)
PEER = "#a8a8a8"    # everyone else
EDGE = "#333333"


def is_smtpc(client):
    return client.startswith(("smtpc", "bulk"))


def conns(client):
    """Connections of a bench.py client: its trailing number (smtpc-1, bulk-8, smtp-source-16)."""
    tail = client.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 1


def fmt(v, digits=0):
    return f"{v:,.{digits}f}"


def sized(title, pattern, default):
    """What a dataset's title says was sent, for the chart's own title: its
    message size in KB (as the tables say 10 KB for 10240 bytes), its count."""
    m = re.search(pattern, title)
    if not m:
        return default
    d = m.groupdict()
    size = int(d["size"])
    text = f"{size // 1024} KB" if size % 1024 == 0 else f"{size:,} bytes"
    return f"{int(d['n']):,} messages of {text}" if d.get("n") else text


# ---------------------------------------------------------------- rendering

def setup():
    import matplotlib
    matplotlib.use("Agg")
    matplotlib.rcParams.update({
        "svg.hashsalt": "smtpc-bench",      # fixed ids (clip paths): same data, same bytes
        "svg.fonttype": "none",             # text stays text: searchable, small diffs
        "font.family": "sans-serif",
        "font.sans-serif": ["DejaVu Sans"],  # its metrics lay the text out; viewers without it use their sans-serif
        "font.size": 10,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.axisbelow": True,
        "axes.grid": True,
        "axes.grid.axis": "x",
        "grid.color": "#e4e4e4",
        "figure.dpi": 100,
    })
    import matplotlib.pyplot as plt
    return plt


def legend(fig):
    from matplotlib.patches import Patch
    fig.legend(handles=[Patch(facecolor=SMTPC, edgecolor=EDGE, label="smtpc (library or CLI)"),
                        Patch(facecolor=PEER, edgecolor=EDGE, label="other clients")],
               loc="upper right", bbox_to_anchor=(0.99, 0.955), ncol=2, frameon=False, fontsize=9)


def footnote(fig, ds, extra=""):
    when = ds.get("after") or ds.get("before") or "date not recorded"
    when = when.split(", load average")[0]
    text = "\n".join(textwrap.wrap(f"{ds['command']}", 170, break_on_hyphens=False)
                     + textwrap.wrap(f"{when}; {ds['title']}{extra}", 170))
    fig.text(0.01, 0.01, text, fontsize=7, color="#555555", ha="left", va="bottom")


def plain_axis(ax, log=False, subs=(1.0, 2.0, 5.0)):
    """Tick labels as plain numbers with thousands separators (also on log axes: 1, 2, 5, 10, ...)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
    f = FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}")
    if log:
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=subs, numticks=20))
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.xaxis.set_major_formatter(f)


def hbars(ax, rows, key, lo=None, hi=None, digits=0, unit="", log=False, xmin=None):
    """Horizontal bars, first row on top; min–max whiskers when lo/hi are given."""
    names = [r["client"] for r in rows]
    vals = [r[key] for r in rows]
    ys = list(range(len(rows)))[::-1]
    err = None
    if lo and hi:
        err = [[r[key] - r[lo] for r in rows], [r[hi] - r[key] for r in rows]]
    ax.barh(ys, vals, color=[SMTPC if is_smtpc(n) else PEER for n in names], edgecolor=EDGE, linewidth=0.5,
            height=0.7, xerr=err, error_kw=dict(ecolor="#444444", elinewidth=0.8, capsize=2))
    ax.set_yticks(ys, names)
    for t, n in zip(ax.get_yticklabels(), names):
        if is_smtpc(n):
            t.set_fontweight("bold")
    top = max((r[hi] if hi else r[key]) for r in rows)
    if log:
        ax.set_xscale("log")
        ax.set_xlim(min([*vals, *([xmin] if xmin else [])]) / 1.6, top * 3)
    else:
        ax.set_xlim(0, top * 1.22)
    for y, v, r in zip(ys, vals, rows):
        x = r[hi] if hi else v
        ax.text(x * 1.06 if log else x + top * 0.015, y, f"{fmt(v, digits)}{unit}", va="center", fontsize=8)
    ax.tick_params(axis="y", length=0)
    plain_axis(ax, log)


def by_connections(ds, key, lo, hi, digits, xlabel, title):
    plt = setup()
    one = [r for r in ds["rows"] if conns(r["client"]) == 1]
    many = [r for r in ds["rows"] if conns(r["client"]) > 1]
    fig, axes = plt.subplots(1, 2, figsize=(10, 0.42 * max(len(one), len(many)) + 2.2))
    for ax, rows, name in ((axes[0], one, "one connection"),
                           (axes[1], many, "eight connections (smtp-source also 16)")):
        hbars(ax, rows, key, lo, hi, digits)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel(xlabel)
    fig.suptitle(title, x=0.01, ha="left", fontsize=12, fontweight="bold")
    legend(fig)
    footnote(fig, ds, "; whiskers: min–max of the runs")
    fig.tight_layout(rect=(0, 0.09, 1, 0.93))
    return fig


BENCH_TITLE = r"(?P<n>\d+) messages of (?P<size>\d+) bytes"


def fig_throughput(ds):
    return by_connections(ds, "msg_s", "msg_s_min", "msg_s_max", 0,
                          "messages per second (higher is better)",
                          f"Throughput: {sized(ds['title'], BENCH_TITLE, 'messages')} to Postfix's smtp-sink "
                          "on loopback")


def fig_cpu(ds):
    return by_connections(ds, "cpu_us", "cpu_us_min", "cpu_us_max", 1,
                          "client CPU µs per message (user+sys; lower is better)",
                          f"Client CPU per message: {sized(ds['title'], BENCH_TITLE, 'messages')} to smtp-sink "
                          "on loopback")


def fig_oneshot(ds):
    plt = setup()
    floor = next((r for r in ds["rows"] if r["client"] == "true"), None)
    rows = [r for r in ds["rows"] if r["client"] != "true"]
    fig, ax = plt.subplots(figsize=(10, 0.42 * len(rows) + 2.4))
    hbars(ax, rows, "ms", "ms_min", "ms_max", 2, " ms", log=True, xmin=floor["ms"] if floor else None)
    if floor:
        ax.axvline(floor["ms"], color="#c03030", linestyle="--", linewidth=1)
        ax.text(floor["ms"] * 1.03, len(rows) - 0.4, f"true: /bin/true, the fork+exec floor ({floor['ms']:.2f} ms)",
                color="#c03030", fontsize=8, va="bottom")
        ax.set_ylim(-0.6, len(rows) + 0.2)
    ax.set_xlabel("ms per message, wall time per process (log scale; lower is better)")
    size = sized(ds["title"], r"one message of (?P<size>\d+) bytes", "one message")
    fig.suptitle(f"One process per message (as cron and PHP's mail() run a sendmail), {size} to smtp-sink",
                 x=0.01, ha="left", fontsize=12, fontweight="bold")
    legend(fig)
    linked = "; smtpc-linked: the same CLI with OpenSSL and libidn2 linked (loaded at start-up, -DSMTPC_CLI_LAZY_LIBS=OFF)"
    footnote(fig, ds, "; whiskers: min–max of the runs" + (linked if any(r["client"] == "smtpc-linked" for r in rows)
                                                             else ""))
    fig.tight_layout(rect=(0, 0.1, 1, 0.92))
    return fig


def fig_big(ds):
    """MB/s and peak RSS of the big message: the latest full table, then the
    later runs that published only some figures, each run a group of its own
    (MB/s compare only within a run: the sink bounds them, and load differs)."""
    plt = setup()
    groups = [(ds, ds.get("after") or "")] + [(x, x.get("after") or "") for x in ds.get("later", [])]
    n = sum(len(g["rows"]) for g, _ in groups) + len(groups)
    fig, axes = plt.subplots(1, 2, figsize=(10, 0.36 * n + 2.4), sharey=True)
    axes[1].set_facecolor("none")  # the run headers of axes[0] may run on under it
    ys, names, labels = [], [], []
    y = n
    for g, when in groups:
        when = re.sub(r"^\d{4}-\d\d-\d\d,? ", "", when.split(", load average")[0]).replace(" (time not recorded)", "")
        labels.append((y, ("run of " if when[:1].isdigit() else "run ") + when + (f": {g['note']}" if g.get("note") else "")))
        y -= 1
        for r in g["rows"]:
            ys.append(y)
            names.append(r)
            y -= 1
    for ax, key, digits, unit, xlabel in (
            (axes[0], "mb_s", 0, " MB/s", "MB/s (higher is better; the sink bounds it)"),
            (axes[1], "rss_mb", 1, " MB", "client's peak RSS, MB (log scale; lower is better)")):
        vals = [r.get(key) for r in names]
        have = [(yy, v, r["client"]) for yy, v, r in zip(ys, vals, names) if v is not None]
        ax.barh([h[0] for h in have], [h[1] for h in have], height=0.7, edgecolor=EDGE, linewidth=0.5,
                color=[SMTPC if is_smtpc(h[2]) else PEER for h in have])
        top = max(h[1] for h in have)
        if key == "rss_mb":
            ax.set_xscale("log")
            ax.set_xlim(1, top * 6)
        else:
            ax.set_xlim(0, top * 1.25)
        for yy, v, r in zip(ys, vals, names):
            if v is None:
                ax.text(1.1 if key == "rss_mb" else top * 0.015, yy, "not published", va="center", fontsize=8,
                        color="#777777", style="italic")
            else:
                ax.text(v * 1.08 if key == "rss_mb" else v + top * 0.015, yy, f"{fmt(v, digits)}{unit}",
                        va="center", fontsize=8)
        ax.set_xlabel(xlabel)
        ax.tick_params(axis="y", length=0)
        plain_axis(ax, key == "rss_mb", subs=(1.0,))
    axes[0].set_yticks(ys, [r["client"] for r in names])
    for t, r in zip(axes[0].get_yticklabels(), names):
        if is_smtpc(r["client"]):
            t.set_fontweight("bold")
    axes[0].set_ylim(0.4, n + 0.6)
    for yy, text in labels:
        axes[0].annotate(text, (0, yy), xytext=(3, 0), textcoords="offset points", fontsize=8.5, fontweight="bold",
                         va="center", ha="left", color="#333333", annotation_clip=False).set_in_layout(False)
    m = re.search(r"One message of (\d+ MiB)", ds["title"])
    fig.suptitle(f"One message of {m.group(1) if m else 'many MiB'} over one connection to smtp-sink", x=0.01,
                 ha="left", fontsize=12,
                 fontweight="bold")
    legend(fig)
    footnote(fig, ds, "; the later runs published only the figures shown" if ds.get("later") else "")
    fig.tight_layout(rect=(0, 0.07, 1, 0.94))
    return fig


# (file in --out, dataset, function): one SVG each; a missing dataset skips its chart.
CHARTS = [
    ("throughput.svg", "throughput", fig_throughput),
    ("cpu.svg", "throughput", fig_cpu),
    ("oneshot.svg", "oneshot", fig_oneshot),
    ("big.svg", "big", fig_big),
]


def creator():
    import matplotlib
    return f"smtpc bench/plot.py (matplotlib {matplotlib.__version__})"


def render(data, out):
    plt = setup()
    written = []
    for name, key, fn in CHARTS:
        ds = data["datasets"].get(key)
        if not ds or not ds.get("rows"):
            print(f"bench/plot.py: no dataset {key!r}: {name} skipped", file=sys.stderr)
            continue
        fig = fn(ds)
        path = Path(out) / name
        fig.savefig(path, format="svg", metadata={"Date": None, "Creator": creator()})
        plt.close(fig)
        written.append(path)
    return written


# ---------------------------------------------------------------- the data file

def dump(data):
    """results.json as written: indented, one line per client row (readable diffs)."""
    def enc(v, ind):
        pad = " " * ind
        if isinstance(v, dict) and "rows" in v:
            items = []
            for k, x in v.items():
                if k == "rows":
                    rows = ",\n".join(pad + "  " + json.dumps(r, ensure_ascii=False) for r in x)
                    items.append(f'{pad} "rows": [\n{rows}\n{pad} ]')
                elif k == "later":
                    items.append(f'{pad} "later": [\n' + ",\n".join(pad + "  " + enc(d, ind + 2) for d in x)
                                 + f"\n{pad} ]")
                else:
                    items.append(f"{pad} {json.dumps(k)}: {json.dumps(x, ensure_ascii=False)}")
            return "{\n" + ",\n".join(items) + f"\n{pad}}}"
        if isinstance(v, dict):
            return "{\n" + ",\n".join(f"{pad} {json.dumps(k)}: {enc(x, ind + 1)}" for k, x in v.items()) + f"\n{pad}}}"
        return json.dumps(v, ensure_ascii=False)
    return enc(data, 0) + "\n"


def merge(data, results_dir):
    """Replaces the datasets results_dir measured (its NAME.json files)."""
    found = sorted(Path(results_dir).glob("*.json"))
    if not found:
        raise SystemExit(f"bench/plot.py: no NAME.json in {results_dir} (bench/run_all.sh writes them)")
    for f in found:
        with open(f, encoding="utf-8") as fh:
            ds = json.load(fh)
        if not isinstance(ds, dict) or not ds.get("rows"):
            raise SystemExit(f"bench/plot.py: {f}: no rows")
        ds["source"] = f"bench/run_all.sh run {Path(results_dir).resolve().name}, {f.name}"
        data["datasets"][f.stem] = ds
        print(f"bench/plot.py: {f.stem} from {f}", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results_dir", nargs="?", help="a bench/run_all.sh output directory to take the figures from")
    ap.add_argument("--data", default=str(DATA), help="the data file (default bench/results.json)")
    ap.add_argument("--out", default=str(HERE), help="where the SVGs go (default bench/)")
    a = ap.parse_args()
    try:
        setup()
    except ImportError:
        raise SystemExit("bench/plot.py: needs matplotlib: apt-get install python3-matplotlib, "
                         "and run it with /usr/bin/python3")
    with open(a.data, encoding="utf-8") as f:
        data = json.load(f)
    if a.results_dir:
        merge(data, a.results_dir)
        tmp = a.data + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(dump(data))
        os.replace(tmp, a.data)
    os.makedirs(a.out, exist_ok=True)
    for p in render(data, a.out):
        print(f"bench/plot.py: wrote {p}", file=sys.stderr)


if __name__ == "__main__":
    main()
