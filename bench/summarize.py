#!/usr/bin/env python3
"""Summarize one bench/run.sh result directory as Markdown.

Reads, per target: <t>.closed.txt (wrk --latency), <t>.cpu.txt (CPU ticks around the
closed-loop run), <t>.fixed.json (oha --output-format json); plus rate.txt, meta.txt and
rampart.rss*.txt. Usage: summarize.py bench/results/<run>
"""

import json
import re
import sys
from pathlib import Path

ORDER = ["upstream", "rampart", "nginx", "haproxy"]
LABEL = {"upstream": "upstream (direct)"}
UNIT_S = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def wrk_duration(text):
    """'412.00us' / '1.23ms' / '2.00s' -> seconds."""
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    return float(m.group(1)) * UNIT_S[m.group(2)] if m else None


def parse_wrk(path):
    out = {"warnings": []}
    if not path.exists():
        return None
    text = path.read_text(errors="replace")
    m = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
    out["rps"] = float(m.group(1)) if m else None
    m = re.search(r"^\s*(\d+) requests in ([\d.]+\w+)", text, re.M)
    out["requests"] = int(m.group(1)) if m else None
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", text, re.M)
        out["p" + pct] = wrk_duration(m.group(1)) if m else None
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    if m:
        out["warnings"].append(f"{m.group(1)} non-2xx/3xx responses")
    m = re.search(r"Socket errors: (.*)", text)
    if m:
        out["warnings"].append("socket errors: " + m.group(1).strip())
    return out


def parse_oha(path):
    if not path.exists() or path.stat().st_size == 0:
        return None
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    pct = data.get("latencyPercentiles", {})
    summary = data.get("summary", {})
    out = {
        "p50": pct.get("p50"),
        "p99": pct.get("p99"),
        "rps": summary.get("requestsPerSec"),
        "warnings": [],
    }
    codes = data.get("statusCodeDistribution", {}) or {}
    bad = {c: n for c, n in codes.items() if not str(c).startswith(("2", "3"))}
    if bad:
        out["warnings"].append(f"fixed-rate status codes {bad}")
    errors = data.get("errorDistribution", {}) or {}
    if errors:
        out["warnings"].append(f"fixed-rate errors {errors}")
    return out


def parse_cpu(path, requests):
    if not path.exists() or not requests:
        return None
    kv = dict(part.split("=", 1) for part in path.read_text().split())
    ticks = int(kv["ticks_after"]) - int(kv["ticks_before"])
    seconds = ticks / int(kv["clk_tck"])
    return seconds * 1e6 / requests


def fmt_latency(seconds):
    if seconds is None:
        return "–"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1.0:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def fmt_num(value, digits=0):
    return "–" if value is None else f"{value:,.{digits}f}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "–"
    return f"{a / b:.2f}×"


def vm_kib(path, key):
    if not path.exists():
        return None
    m = re.search(rf"^{key}:\s+(\d+) kB", path.read_text(), re.M)
    return int(m.group(1)) if m else None


def main():
    run = Path(sys.argv[1])
    rows = {}
    for t in ORDER:
        closed = parse_wrk(run / f"{t}.closed.txt")
        if closed is None:
            continue
        rows[t] = {
            "closed": closed,
            "fixed": parse_oha(run / f"{t}.fixed.json"),
            "cpu": parse_cpu(run / f"{t}.cpu.txt", closed.get("requests")),
        }

    meta = (run / "meta.txt").read_text() if (run / "meta.txt").exists() else ""
    rate = (run / "rate.txt").read_text().strip() if (run / "rate.txt").exists() else "?"
    conns = re.search(r"CONNS=(\d+)", meta)
    duration = re.search(r"DURATION=(\d+)", meta)

    print(f"## rampart bench {run.name}\n")
    print("```")
    print(meta.rstrip())
    print("```\n")
    print("| target | req/s | p50 | p99 | fixed-rate p50 | fixed-rate p99 | CPU µs/req |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for t, row in rows.items():
        c, f = row["closed"], row["fixed"] or {}
        print(
            f"| {LABEL.get(t, t)} | {fmt_num(c.get('rps'))} | {fmt_latency(c.get('p50'))} "
            f"| {fmt_latency(c.get('p99'))} | {fmt_latency(f.get('p50'))} "
            f"| {fmt_latency(f.get('p99'))} | {fmt_num(row['cpu'], 1)} |"
        )
    print()
    print(
        f"Closed loop: wrk, 1 thread, {conns.group(1) if conns else '?'} connections, "
        f"{duration.group(1) if duration else '?'} s after a warm-up. Fixed rate: oha at {rate} req/s "
        "for every target (a fraction of the slowest proxy's closed-loop throughput), "
        "latency-corrected. CPU µs/req: user+system time of the proxy's own process(es) "
        "during the closed-loop run divided by the requests served (the upstream's CPU is "
        "not included, except on its own row)."
    )

    if "rampart" in rows:
        r = rows["rampart"]
        print()
        for peer in ("nginx", "haproxy"):
            if peer not in rows:
                continue
            p = rows[peer]
            print(
                f"- rampart / {peer}: throughput {ratio(r['closed'].get('rps'), p['closed'].get('rps'))}, "
                f"fixed-rate p99 {ratio((r['fixed'] or {}).get('p99'), (p['fixed'] or {}).get('p99'))}, "
                f"CPU per request {ratio(r['cpu'], p['cpu'])}"
            )
        hwm = vm_kib(run / "rampart.rss.txt", "VmHWM")
        if hwm is not None:
            before = vm_kib(run / "rampart.rss-before.txt", "VmHWM")
            rss_run = parse_wrk(run / "rampart.rss-run.txt") or {}
            conns_rss = re.search(r"RSS_CONNS=(\d+)", meta)
            line = (
                f"- rampart peak RSS (VmHWM) with {conns_rss.group(1) if conns_rss else '?'} "
                f"keep-alive connections: {hwm / 1024:.1f} MiB"
            )
            if before is not None:
                line += f" (peak before that run: {before / 1024:.1f} MiB)"
            if rss_run.get("rps"):
                line += f"; {rss_run['rps']:,.0f} req/s, p99 {fmt_latency(rss_run.get('p99'))}"
            print(line)
            for w in rss_run.get("warnings", []):
                print(f"  - warning (peak-RSS run): {w}")

    warnings = []
    for t, row in rows.items():
        for w in row["closed"].get("warnings", []):
            warnings.append(f"{t} closed loop: {w}")
        if row["fixed"] is None:
            warnings.append(f"{t}: no fixed-rate result")
        else:
            for w in row["fixed"]["warnings"]:
                warnings.append(f"{t}: {w}")
            achieved = row["fixed"].get("rps")
            if achieved and rate.isdigit() and achieved < 0.95 * int(rate):
                warnings.append(f"{t}: fixed-rate run reached only {achieved:,.0f} of {rate} req/s")
    for t in rows:
        bad = run / f"{t}.badhost.txt"
        if bad.exists() and bad.read_text().strip() not in ("400", ""):
            warnings.append(f"{t}: a foreign Host header got {bad.read_text().strip()}, not 400")
    if warnings:
        print("\nWarnings (results with these are not comparable):")
        for w in warnings:
            print(f"- {w}")


if __name__ == "__main__":
    main()
