#!/usr/bin/env python3
"""Summarize one bench/jwt.sh result directory as Markdown.

Per run <target>.<alg>.<mode>: <name>.closed.txt (wrk --latency plus the token script's
"tokens: N, wrapped: W" line) and <name>.cpu.txt (CPU ticks of the proxy around the run).
Usage: summarize.py bench/results/jwt-<run>
"""

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from summarize import parse_cpu, parse_wrk, fmt_latency  # noqa: E402

MODES = ["repeated", "fresh", "badsig", "hmac", "ed25519"]


def main():
    out = Path(sys.argv[1])
    runs = {}
    for closed in sorted(out.glob("*.closed.txt")):
        name = closed.name[: -len(".closed.txt")]
        target, alg, mode = name.split(".")
        w = parse_wrk(closed)
        if not w:
            continue
        text = closed.read_text(errors="replace")
        m = re.search(r"tokens: (\d+), wrapped: (\d+)", text)
        if m and int(m.group(2)) > 0 and mode == "fresh":
            w["warnings"].append(f"token file wrapped {m.group(2)} times: some tokens repeated")
        non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
        w["non2xx"] = int(non2xx.group(1)) if non2xx else 0
        if mode == "badsig":
            # Every answer must be a refusal; the non-2xx count is the expected outcome.
            w["warnings"] = [x for x in w["warnings"] if "non-2xx" not in x]
            if w["requests"] and w["non2xx"] != w["requests"]:
                w["warnings"].append(f"only {w['non2xx']} of {w['requests']} refused")
        w["cpu_us"] = parse_cpu(out / f"{name}.cpu.txt", w["requests"])
        runs[(target, alg, mode)] = w

    print((out / "meta.txt").read_text() if (out / "meta.txt").exists() else "", end="")
    print()
    print("| proxy | alg | token | req/s | p50 | p99 | CPU µs/req | CPU / HAProxy | CPU / rampart |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    algs = sorted({k[1] for k in runs})
    targets = sorted({k[0] for k in runs}, key=lambda t: (t == "haproxy", t))
    warnings = []
    for alg in algs:
        for mode in MODES:
            for target in targets:
                w = runs.get((target, alg, mode))
                if not w:
                    continue
                ratio = ""
                base = ""
                if target != "haproxy":
                    h = runs.get(("haproxy", alg, mode))
                    if h and h.get("cpu_us") and w.get("cpu_us"):
                        ratio = f"{w['cpu_us'] / h['cpu_us']:.2f}×"
                if target not in ("haproxy", "rampart"):
                    r = runs.get(("rampart", alg, mode))
                    if r and r.get("cpu_us") and w.get("cpu_us"):
                        base = f"{w['cpu_us'] / r['cpu_us']:.2f}×"
                cpu = f"{w['cpu_us']:.1f}" if w.get("cpu_us") else "?"
                print(f"| {target} | {alg} | {mode} | {w['rps']:,.0f} | {fmt_latency(w['p50'])} | "
                      f"{fmt_latency(w['p99'])} | {cpu} | {ratio} | {base} |")
                for x in w["warnings"]:
                    warnings.append(f"{target} {alg} {mode}: {x}")
    for alg in algs:
        good = runs.get(("rampart", alg, "fresh"))
        bad = runs.get(("rampart", alg, "badsig"))
        if good and bad and good.get("cpu_us") and bad.get("cpu_us"):
            print(f"\nrampart {alg}: bad signature / fresh valid token CPU = "
                  f"{bad['cpu_us'] / good['cpu_us']:.2f}×")
    if warnings:
        print("\nwarnings:")
        for x in warnings:
            print(f"- {x}")


if __name__ == "__main__":
    main()
