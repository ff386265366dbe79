#!/usr/bin/env python3
"""Chart of the server benchmark: bench/results/server.json -> server.png.

    .venv/bin/python bench/plot.py [bench/results/server.json] [-o server.png]

Grouped bars, one group per payload size, one bar per server (req/s, log
scale when the figures span more than a factor of 20), each bar labelled with
its value and its ratio to grpcio sync. bench/run.py calls plot_server() at
the end of a run. Needs matplotlib (bench/requirements.txt).
"""

import argparse
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

COLORS = {
    "grpc_green": "#2e7d32",
    "grpc_green_gevent": "#81c784",
    "grpcio_sync": "#1565c0",
    "grpcio_aio": "#64b5f6",
    "grpcio_gevent": "#b0bec5",
    "pygrpc_native": "#8e24aa",
    "cpp": "#ef6c00",
    "cpp_async": "#ffb74d",
    "nghttpd": "#757575",
}


def _size(n):
    return "%d KiB" % (n // 1024) if n >= 1024 and n % 1024 == 0 else "%d B" % n


def _short(v):
    if v >= 100000:
        return "%.0fk" % (v / 1000)
    if v >= 10000:
        return "%.1fk" % (v / 1000)
    return f"{v:,.0f}"


def plot_server(report, path):
    summary = report["summary"]
    names = list(report["servers"])
    payloads = report["method"]["payloads_bytes"]
    values = [
        summary[n][str(p)]["req_per_s"] or summary[n][str(p)].get("partial_req_per_s")
        for n in names
        for p in payloads
    ]
    present = [v for v in values if v]
    log_scale = bool(present) and max(present) / min(present) > 20

    fig, ax = plt.subplots(figsize=(max(7.0, 2.0 + 0.75 * len(names) * len(payloads)), 6.5))
    width = 0.8 / max(1, len(names))
    for i, name in enumerate(names):
        xs, ys = [], []
        for g, p in enumerate(payloads):
            x = g + (i - (len(names) - 1) / 2) * width
            cell = summary[name][str(p)]
            v = cell["req_per_s"]
            if v:
                xs.append(x)
                ys.append(v)
                label = _short(v)
                if cell.get("vs_grpcio_sync"):
                    label += "\n%.1fx" % cell["vs_grpcio_sync"]
                if any("load-generator bound" in n for n in cell.get("notes", [])):
                    label += "\n(h2load\nbound)"
                elif cell.get("notes"):
                    label += "\n(!)"
                ax.annotate(
                    label,
                    (x, v),
                    xytext=(0, 3),
                    textcoords="offset points",
                    ha="center",
                    va="bottom",
                    fontsize=7,
                )
            elif cell.get("partial_req_per_s"):
                # Stalled or lost requests: what it did, hatched, not a figure.
                pv = cell["partial_req_per_s"]
                ax.bar(
                    [x],
                    [pv],
                    width * 0.92,
                    color="white",
                    hatch="///",
                    edgecolor=COLORS.get(name, "black"),
                    linewidth=0.8,
                )
                ax.annotate(
                    "STALLED\n%s\nincl. stall" % _short(pv),
                    (x, pv),
                    xytext=(0, 3),
                    textcoords="offset points",
                    ha="center",
                    va="bottom",
                    fontsize=7,
                    color="#c62828",
                )
            else:
                ax.annotate(
                    "skipped" if cell.get("skipped") else "FAILED",
                    (x, min(present) if present else 1),
                    rotation=90,
                    ha="center",
                    va="bottom",
                    fontsize=8,
                    color="#c62828",
                )
        ax.bar(
            xs,
            ys,
            width * 0.92,
            label=report["servers"][name],
            color=COLORS.get(name),
            edgecolor="black",
            linewidth=0.4,
        )
    if log_scale:
        ax.set_yscale("log")
        ax.set_ylim(min(present) / 3, max(present) * 3)
    elif present:
        ax.set_ylim(0, max(present) * 1.25)
    ax.set_xticks(range(len(payloads)))
    ax.set_xticklabels(["%s payload" % _size(p) for p in payloads])
    ax.set_ylabel("unary calls per second%s" % (" (log scale)" if log_scale else ""))
    m = report["method"]
    ax.set_title(
        "Unary echo server throughput, one server core (h2load -c %d -m %d)\n"
        "labels: req/s and ratio to grpcio sync; %s, load avg %.2f"
        % (
            m["connections"],
            m["max_concurrent_streams"],
            report.get("timestamp", "")[:10],
            report.get("machine", {}).get("loadavg_at_start", [0])[0],
        ),
        fontsize=10,
    )
    ax.grid(axis="y", which="both", alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.07), ncol=3, frameon=False)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("input", nargs="?", default=os.path.join(here, "results", "server.json"))
    ap.add_argument("-o", "--output", default=None)
    args = ap.parse_args()
    with open(args.input) as f:
        report = json.load(f)
    out = args.output or os.path.splitext(args.input)[0] + ".png"
    plot_server(report, out)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
