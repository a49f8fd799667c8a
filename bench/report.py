"""Turn the per-round records into medians, a markdown report and matplotlib charts."""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path

METRICS = ("rps", "p50_ms", "p99_ms", "cpu_us_per_req", "syscalls_per_req", "rss_mib")


def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarise(runs: list[dict]) -> dict:
    """(app, server, conc) -> medians over rounds, plus the rps spread and the sum of errors."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in runs:
        groups[(r["app"], r["server"], r["conc"])].append(r)
    out = {}
    for key, rs in groups.items():
        row = {m: _median(r.get(m) for r in rs) for m in METRICS}
        rps = [r["rps"] for r in rs]
        row["spread"] = (max(rps) - min(rps)) / 2 / row["rps"] if row["rps"] and len(rps) > 1 else None
        row["errors"] = sum(r["errors"] for r in rs)
        row["rounds"] = len(rs)
        out[key] = row
    return out


def fmt(v, spec="{:,.0f}"):
    return "–" if v is None else spec.format(v)


def markdown(meta: dict, apps: list, servers: list, concs: list[int], runs: list[dict], status: dict,
             idle: list[dict], straces: list[dict], charts: list[str], baseline: dict) -> str:
    med = summarise(runs)
    lines = [f"# ringserve benchmark — {meta['timestamp']}", ""]
    if meta.get("quick"):
        lines += ["> **Smoke run (`--quick`)**: 1 round, short runs, possibly on a busy machine. "
                  "Not a result; it only shows the instrument works.", ""]
    lines += ["## Machine and method", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in meta["facts"].items()]
    lines += _summary(med, apps, servers, concs[len(concs) // 2], status, baseline)
    for app in apps:
        lines += _app_table(med, app, servers, concs, status, baseline)
    lines += _idle_table(idle) + _strace_table(straces)
    lines += ["", "## Notes", ""] + [f"- {n}" for n in meta["notes"]]
    if charts:
        lines += ["", "## Charts", ""] + [f"![{c}]({c})" for c in charts]
    return "\n".join(lines) + "\n"


def _summary(med, apps, servers, mid, status, baseline) -> list[str]:
    lines = ["", f"## Summary: requests/s at c={mid} (× baseline: "
             + ", ".join(f"{i.upper()} {b}" for i, b in baseline.items()) + ")", ""]
    lines += ["| app | " + " | ".join(s.name for s in servers) + " |", "|---" * (len(servers) + 1) + "|"]
    for app in apps:
        cells = [_cell(med, status, app, s, mid, baseline) for s in servers]
        lines.append(f"| {app.name} | " + " | ".join(cells) + " |")
    return lines


def _app_table(med, app, servers, concs, status, baseline) -> list[str]:
    lines = ["", f"## {app.name} — {app.describe}", "",
             "| server | c | req/s | × base | spread | p50 ms | p99 ms | errors | CPU µs/req | "
             "syscalls/req | RSS MiB |", "|---" * 11 + "|"]
    for s in servers:
        if app.interface not in s.interfaces:
            continue
        if (app.name, s.name) in status:
            lines.append(f"| {s.name} | | {status[(app.name, s.name)]} | | | | | | | | |")
            continue
        for c in concs:
            row = med.get((app.name, s.name, c))
            if row is None:
                continue
            base = med.get((app.name, baseline[app.interface], c), {}).get("rps")
            ratio = row["rps"] / base if base else None
            lines.append(
                f"| {s.name} | {c} | {fmt(row['rps'])} | {fmt(ratio, '{:.2f}')} | "
                f"{fmt(row['spread'], '±{:.0%}')} | {fmt(row['p50_ms'], '{:.2f}')} | "
                f"{fmt(row['p99_ms'], '{:.2f}')} | {row['errors']} | {fmt(row['cpu_us_per_req'], '{:.1f}')} | "
                f"{fmt(row['syscalls_per_req'], '{:.2f}')} | {fmt(row['rss_mib'], '{:.1f}')} |")
    return lines


def _idle_table(idle) -> list[str]:
    if not idle:
        return []
    lines = ["", "## Memory per idle keep-alive connection", "",
             "Each connection made one GET of the plaintext app, then stayed idle. KiB/conn = RSS delta of "
             "the server tree / connections still open.", "",
             "| server | interface | opened | still open | RSS before MiB | KiB/conn |", "|---" * 6 + "|"]
    for r in idle:
        if "error" in r:
            lines.append(f"| {r['server']} | {r['interface']} | {r['error']} | | | |")
        else:
            lines.append(f"| {r['server']} | {r['interface']} | {r['opened']} | {r['alive']} | "
                         f"{r['base_kib'] / 1024:.1f} | {fmt(r['kib_per_conn'], '{:.1f}')} |")
    return lines


def _strace_table(straces) -> list[str]:
    if not straces:
        return []
    lines = ["", "## Syscall names (strace -f -c, c=64) — SLOWED by strace: names and proportions only", "",
             "| server | app | top syscalls (calls per request) |", "|---|---|---|"]
    for r in straces:
        text = r.get("error") or ", ".join(f"{n} {v:.2f}" for n, v in r["top"])
        lines.append(f"| {r['server']} | {r['app']} | {text} |")
    return lines


def _cell(med, status, app, server, conc, baseline):
    if app.interface not in server.interfaces:
        return ""
    if (app.name, server.name) in status:
        return status[(app.name, server.name)].split(":")[0]
    row = med.get((app.name, server.name, conc))
    if not row:
        return "–"
    base = med.get((app.name, baseline[app.interface], conc), {}).get("rps")
    return fmt(row["rps"]) + (f" ({row['rps'] / base:.2f}×)" if base else "")


def charts(prefix: Path, apps: list, servers: list, concs: list[int], runs: list[dict], idle: list[dict]) -> list[str]:
    """Write <prefix>-rps.png, -p99.png and -idle.png; return their file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    med = summarise(runs)
    palette = plt.get_cmap("tab10")
    color = {s.name: palette(i % 10) for i, s in enumerate(servers)}  # one colour per server in every panel
    names = []
    for metric, label, log in (("rps", "requests/s (median)", False), ("p99_ms", "p99 latency, ms (log)", True)):
        cols = 2
        rows = (len(apps) + cols - 1) // cols
        fig, axes = plt.subplots(rows, cols, figsize=(7 * cols, 3.4 * rows + 0.8), squeeze=False)
        for ax, app in zip(axes.flat, apps, strict=False):
            present = [s.name for s in servers if any((app.name, s.name, c) in med for c in concs)]
            width = 0.8 / max(len(present), 1)
            for i, name in enumerate(present):
                ys = [(med.get((app.name, name, c)) or {}).get(metric) or 0 for c in concs]
                ax.bar([x + i * width for x in range(len(concs))], ys, width, label=name, color=color[name])
            ax.set_xticks([x + width * (len(present) - 1) / 2 for x in range(len(concs))], [f"c={c}" for c in concs])
            ax.set_title(app.name)
            ax.set_ylabel(label)
            if log and present:
                ax.set_yscale("log")
        for ax in list(axes.flat)[len(apps):]:
            ax.axis("off")
        shown = [s.name for s in servers if any(k[1] == s.name for k in med)]
        handles = [plt.Rectangle((0, 0), 1, 1, color=color[n]) for n in shown]
        fig.legend(handles, shown, loc="upper center", ncol=min(len(shown), 5), fontsize=8)
        fig.tight_layout(rect=(0, 0, 1, 1 - 0.6 / fig.get_figheight()))
        path = Path(f"{prefix}-{metric.split('_')[0]}.png")
        fig.savefig(path, dpi=90)
        plt.close(fig)
        names.append(path.name)
    ok = [r for r in idle if r.get("kib_per_conn") is not None]
    if ok:
        fig, ax = plt.subplots(figsize=(8, 3.5))
        ax.barh([f"{r['server']} ({r['interface']})" for r in ok], [r["kib_per_conn"] for r in ok])
        ax.set_xlabel("KiB per idle keep-alive connection")
        fig.tight_layout()
        path = Path(f"{prefix}-idle.png")
        fig.savefig(path, dpi=90)
        plt.close(fig)
        names.append(path.name)
    return names
