"""Run the benchmark suite: ``python -m benchmarks [--quick] [--only NAME,...]``.

Writes one file per section under ``benchmarks/results/`` and assembles them into
``benchmarks/results/latest.md`` (the tables the docs' Performance page includes), so
``--only`` re-runs replace just their sections; keeps the figures the plot needs in
``benchmarks/results/plot.json`` (decoding, transport, capacity: each from its latest run)
and draws ``docs/assets/benchmarks.png`` from it; prints the tables as it goes.
Benchmarks are not tests: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import sys
import time
from importlib.metadata import version
from typing import Any

import anyio

from . import (
    attack,
    blocking,
    bulk_disk,
    capacity,
    coordination,
    decoding,
    distributed,
    enrich,
    fanout,
    looplag,
    memory,
    percall,
    ratelimit,
    transport,
    webhooks,
)
from ._common import pin_client

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "latest.md"
PLOT = ROOT / "docs" / "assets" / "benchmarks.png"
ALL = (
    "decoding",
    "transport",
    "overhead",
    "percall",
    "capacity",
    "fanout",
    "looplag",
    "memory",
    "bulk_disk",
    "ratelimit",
    "coordination",
    "distributed",
    "webhooks",
    "attack",
    "blocking",
    "enrich",
)
SECTIONS = {  # title -> results file stem, in page order
    "Decoding": "decoding",
    "Transport overhead": "transport",
    "Overhead against bare aiohttp, 25 rounds": "overhead",
    "Our own cost per call, without the network": "percall",
    "Capacity at the real poll interval": "capacity",
    "Fan-out scale": "fanout",
    "Event-loop lag with big payloads": "looplag",
    "Memory of a fan-out of big answers": "memory",
    "Bulk pull to disk": "bulk_disk",
    "Rate limit as the server counts it": "ratelimit",
    "Shared rate limit on Redis": "coordination",
    "Distributed pull on arq": "distributed",
    "Distributed pull, one worker killed": "distributed_killed",
    "Webhooks against polling": "webhooks",
    "The webhook receiver under attack": "attack",
    "The blocking client against the async one": "blocking",
    "Enrich: the chain against three calls by hand": "enrich",
}


def _machine() -> str:
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import aiohttp
    import msgspec

    return (
        f"{cpu}, {os.cpu_count()} cores; Python {platform.python_version()}, "
        f"aiohttp {aiohttp.__version__}, msgspec {msgspec.__version__}, "
        f"anyio {version('anyio')}"
    )


PLOT_DATA = ROOT / "benchmarks" / "results" / "plot.json"


def _save_plot_data(
    dec: list[decoding.DecodeResult] | None,
    tr: list[transport.TransportResult] | None,
    cap: list[capacity.CapacityResult] | None,
) -> dict[str, Any]:
    """Merge this run's figures into ``results/plot.json`` (an ``--only`` run replaces
    just its sections), and return them all: the plot draws every section measured."""
    data: dict[str, Any] = json.loads(PLOT_DATA.read_text()) if PLOT_DATA.exists() else {}
    if dec:
        data["decoding"] = {
            name: [
                (r.size / 1e6, r.times[name].median * 1e3) for r in dec if r.kind == "Investments"
            ]
            for name in dec[0].times
        }
    if tr:
        data["transport"] = [
            {
                "label": f"{r.loop}\nc={r.concurrency}",
                "rates": {name: stat.median for name, stat in r.rate.items()},
            }
            for r in tr
        ]
    if cap:
        data["capacity"] = [
            {
                "label": f"{r.loop}, {r.gc_mode} GC",
                "levels": [
                    (lv.in_flight, lv.polls_per_s / lv.scheduled_per_s, lv.lag_p99 * 1e3)
                    for lv in r.levels
                ],
            }
            for r in cap
        ]
    PLOT_DATA.write_text(json.dumps(data, indent=1) + "\n")
    return data


def _plot(data: dict[str, Any]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib not installed: no plot)", file=sys.stderr)
        return
    panels = [k for k in ("decoding", "transport", "capacity") if data.get(k)]
    if not panels:
        return
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.2), squeeze=False)
    ax_list = list(axes[0])
    if "decoding" in panels:
        ax = ax_list.pop(0)
        for name, points in data["decoding"].items():
            ax.plot(
                [mb for mb, _ in points],
                [ms for _, ms in points],
                marker="o",
                label=name,
                linewidth=2.5 if name == "flinks-async" else 1.2,
            )
        ax.set(
            xscale="log",
            yscale="log",
            xlabel="/Investments payload (MB)",
            ylabel="decode time (ms, median)",
            title="Decoding (lower is better)",
        )
        ax.legend(fontsize=7)
        ax.grid(True, which="both", alpha=0.3)
    if "transport" in panels:
        ax = ax_list.pop(0)
        tr = data["transport"]
        names = list(tr[0]["rates"])
        width = 0.8 / len(names)
        for i, name in enumerate(names):
            xs = [j + i * width for j in range(len(tr))]
            ax.bar(xs, [r["rates"][name] for r in tr], width, label=name)
        ax.set_xticks([j + width for j in range(len(tr))], [r["label"] for r in tr], fontsize=8)
        ax.set(
            ylabel="logins/s (Authorize + 2 polls + data)",
            title="Transport throughput (higher is better)",
        )
        ax.legend(fontsize=8)
    if "capacity" in panels:
        ax = ax_list.pop(0)
        for run in data["capacity"]:
            levels = run["levels"]
            ax.plot(
                [n for n, _, _ in levels],
                [ratio * 100 for _, ratio, _ in levels],
                marker="o",
                label=run["label"],
                linestyle="-" if "tuned" in run["label"] else "--",
            )
        ax.set(
            xlabel="logins in flight (10 s polls)",
            ylabel="polls sent on schedule (%)",
            title="Capacity of one process (higher is better)",
            ylim=(0, 105),
        )
        ax.legend(fontsize=8)
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    PLOT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(PLOT, dpi=110)
    print(f"plot: {PLOT}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    p.add_argument("--quick", action="store_true", help="small sizes, ~1 minute")
    p.add_argument("--only", default=",".join(ALL), help=f"comma-separated of {ALL}")
    p.add_argument("--no-write", action="store_true", help="print only")
    args = p.parse_args(argv)
    only = [x.strip() for x in args.only.split(",") if x.strip()]
    q = args.quick
    header = (
        f"_Machine: {_machine()}; {pin_client()}, emulator on its own core. "
        f"Each section notes its run date and command._"
    )
    dec = tr = cap = None
    written: dict[str, str] = {}
    command = f"python -m benchmarks{' --quick' if q else ''}"

    def show(title: str, body: str) -> None:
        text = f"### {title}\n\n_{time.strftime('%Y-%m-%d')}, `{command}`._\n\n{body}"
        written[title] = text
        print(f"\n{text}", flush=True)

    if "decoding" in only:
        dec = decoding.run(decoding.QUICK_SIZES[:2] if q else decoding.SIZES, 3 if q else 5)
        show("Decoding", decoding.markdown(dec))
    if "transport" in only:
        tr = transport.run_loops((1, 64, 512), 200 if q else 1000, 2 if q else 9)
        show("Transport overhead", transport.markdown(tr))
    if "overhead" in only:  # the ratios of the table above, measured more precisely
        ov = transport.run_loops((64, 512), 200 if q else 1000, 2 if q else 25, transport.OVERHEAD)
        show("Overhead against bare aiohttp, 25 rounds", transport.markdown(ov))
    if "percall" in only:  # what those ratios are made of, without the network
        pc = percall.run_loops(200 if q else 1000, 3 if q else 9)
        show("Our own cost per call, without the network", percall.markdown(pc))
    if "capacity" in only:
        cap = (
            capacity.run_loops((1_000, 2_000), 1.0, 3.0)
            if q
            else capacity.run_loops(capacity.LEVELS, 10.0, 20.0)
        )
        show("Capacity at the real poll interval", capacity.markdown(cap))
    if "fanout" in only:
        fo = anyio.run(fanout.run, 1000 if q else 10_000, 100 if q else 1000)
        show("Fan-out scale", fo.markdown())
    if "looplag" in only:
        sizes = (5_000_000,) if q else (25_000_000, 50_000_000)
        lag = looplag.run_loops(sizes, 2 if q else 4)
        show("Event-loop lag with big payloads", looplag.markdown(lag))
    if "memory" in only:
        size, logins = (4_000_000, 8) if q else (20_000_000, 50)
        mem = anyio.run(memory.run, size, logins)
        show("Memory of a fan-out of big answers", memory.markdown(mem, size, logins))
    if "bulk_disk" in only:
        bd = anyio.run(bulk_disk.run, 500 if q else 10_000, 50 if q else 300)
        show("Bulk pull to disk", bulk_disk.markdown(bd))
    if "ratelimit" in only:
        rl = anyio.run(ratelimit.run, (0.05,) if q else (0.0, 0.05, 0.2), 150 if q else 300)
        show("Rate limit as the server counts it", ratelimit.markdown(rl))
    if "coordination" in only:
        co = anyio.run(coordination.run, 300 if q else 1000, 64, 2 if q else 7)
        show("Shared rate limit on Redis", coordination.markdown(co))
    if "distributed" in only:
        di = anyio.run(distributed.run, 300 if q else 3000, (1, 2) if q else (1, 2, 3))
        show("Distributed pull on arq", distributed.markdown(di))
        if not q:
            dk = anyio.run(distributed.run_killed)
            show("Distributed pull, one worker killed", distributed.killed_markdown(dk))
    if "webhooks" in only:
        wh = anyio.run(webhooks.run, 200 if q else 1000)
        show("Webhooks against polling", webhooks.markdown(wh))
    if "attack" in only:
        runs = anyio.run(attack.run, 1 if q else 3, 50 if q else 200)
        show("The webhook receiver under attack", attack.markdown(runs))
    if "blocking" in only:
        bl = anyio.run(blocking.run, 100 if q else 1000, 200 if q else 1000, 3 if q else 9)
        show("The blocking client against the async one", blocking.markdown(bl))
    if "enrich" in only:
        en = anyio.run(enrich.run, 200 if q else 1000, 50, 3 if q else 5)
        show("Enrich: the chain against three calls by hand", enrich.markdown(en))
    if not args.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        for title, text in written.items():
            (RESULTS.parent / f"{SECTIONS[title]}.md").write_text(text + "\n")
        parts = [header] + [
            (RESULTS.parent / f"{name}.md").read_text().strip()
            for name in SECTIONS.values()
            if (RESULTS.parent / f"{name}.md").exists()
        ]
        RESULTS.write_text("\n\n".join(parts) + "\n")
        print(f"\nresults: {RESULTS.relative_to(ROOT)}")
        _plot(_save_plot_data(dec, tr, cap))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
