#!/usr/bin/env python3
"""Compare kinto-rs with the reference Kinto from workload.sh (and ceilings.sh) TSV results.

Usage: compare.py WORKLOAD.tsv [CEILINGS.tsv] [--json OUT.json]

Rows labelled kinto-uwsgi-rN are the reference, kinto-rs-rN are ours; several rounds are merged
by median. Prints one Markdown table: scenario, req/s of each server and their ratio, p50/p99 of
each, errors, the ceiling for the scenario and our share of it, and whether the issue's target
holds; then peak RSS of all server processes for each. Writes the same data as JSON.
"""
import json
import statistics
import sys

# Targets of the benchmark issue: minimum throughput ratio against the reference, and which
# ceiling (and share of it) applies to each scenario.
THROUGHPUT_TARGET = {"S1": None, "S2": 20, "S3": 20, "S4": 20, "S5": 20, "S6": 10, "S7": 10,
                     "S8": 10, "S9": 20}
CEILING_OF = {"S1": ("N-keepalive", 0.70), "S2": ("P1", 1 / 3), "S3": ("P1", 1 / 3),
              "S4": ("P1", 1 / 3), "S5": ("P1", 1 / 3), "S9": ("P1", 1 / 3)}
P99_RATIO_MAX = 0.1
RSS_RATIO_MAX = 0.1


def read_tsv(path):
    rows, header = [], None
    with open(path, newline="") as f:
        for line in f:
            if not line.strip():
                continue
            values = line.rstrip("\n").split("\t")
            if values[0] == "label":
                header = values
                continue
            rows.append(dict(zip(header, values)))
    return rows


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def server_of(label):
    if label.startswith("kinto-rs"):
        return "rs"
    if label.startswith("kinto-uwsgi"):
        return "ref"
    return None


def summarize(workload, ceilings):
    per = {}
    names = {}
    for r in workload:
        srv = server_of(r["label"])
        if srv is None:
            continue
        names[r["scenario"]] = r["name"]
        per.setdefault((r["scenario"], srv), []).append(r)
    ceil = {}
    for r in ceilings:
        rate = num(r.get("rps"))
        if rate is not None:
            ceil.setdefault(r["scenario"], []).append(rate)
    ceil = {k: statistics.median(v) for k, v in ceil.items()}

    def med(rows, key):
        vals = [num(r.get(key)) for r in rows if num(r.get(key)) is not None]
        return statistics.median(vals) if vals else None

    out = []
    for sc in sorted(names, key=lambda s: int(s[1:])):
        ref, rs = per.get((sc, "ref"), []), per.get((sc, "rs"), [])
        row = {"scenario": sc, "name": names[sc]}
        for tag, rows in (("ref", ref), ("rs", rs)):
            row[f"{tag}_rps"] = med(rows, "rps")
            row[f"{tag}_p50_ms"] = med(rows, "p50_ms")
            row[f"{tag}_p99_ms"] = med(rows, "p99_ms")
            row[f"{tag}_errors"] = sum(int(num(r.get("non2xx")) or 0) + int(num(r.get("socket_errors")) or 0)
                                       for r in rows) if rows else None
            row[f"{tag}_rss_mb"] = max((num(r.get("rss_peak_mb")) or 0 for r in rows), default=None)
        ratio = (row["rs_rps"] / row["ref_rps"]) if row["rs_rps"] and row["ref_rps"] else None
        row["ratio"] = ratio
        checks = []
        if THROUGHPUT_TARGET.get(sc) and ratio is not None:
            checks.append(ratio >= THROUGHPUT_TARGET[sc])
        if sc in CEILING_OF and CEILING_OF[sc][0] in ceil and row["rs_rps"]:
            name, share = CEILING_OF[sc]
            row["ceiling"] = name
            row["ceiling_rps"] = ceil[name]
            row["ceiling_share"] = row["rs_rps"] / ceil[name]
            checks.append(row["ceiling_share"] >= share)
        if row["rs_p99_ms"] is not None and row["ref_p99_ms"]:
            row["p99_ratio"] = row["rs_p99_ms"] / row["ref_p99_ms"]
            checks.append(row["p99_ratio"] <= P99_RATIO_MAX)
        row["target_met"] = all(checks) if checks else None
        out.append(row)
    rss_ref = max((r["ref_rss_mb"] or 0 for r in out), default=0)
    rss_rs = max((r["rs_rss_mb"] or 0 for r in out), default=0)
    return {"scenarios": out, "ceilings": ceil, "rss_peak_mb": {"ref": rss_ref, "rs": rss_rs},
            "rss_ratio": (rss_rs / rss_ref) if rss_ref else None}


def fmt(v, digits=1):
    if v is None:
        return "-"
    return f"{v:,.{digits}f}"


def render(summary):
    lines = ["| scenario | Kinto req/s | kinto-rs req/s | ratio | Kinto p50/p99 ms | kinto-rs p50/p99 ms "
             "| errors Kinto/rs | ceiling req/s | share of ceiling | target |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|:---:|"]
    for r in summary["scenarios"]:
        target = {True: "met", False: "MISSED", None: "-"}[r["target_met"]]
        lines.append(
            f"| {r['scenario']} {r['name']} | {fmt(r['ref_rps'])} | {fmt(r['rs_rps'])} "
            f"| {fmt(r['ratio'])}x | {fmt(r['ref_p50_ms'])} / {fmt(r['ref_p99_ms'])} "
            f"| {fmt(r['rs_p50_ms'], 2)} / {fmt(r['rs_p99_ms'], 2)} "
            f"| {fmt(r['ref_errors'], 0)} / {fmt(r['rs_errors'], 0)} "
            f"| {fmt(r.get('ceiling_rps'), 0)} {r.get('ceiling', '')} "
            f"| {fmt(100 * r['ceiling_share'] if r.get('ceiling_share') else None, 0)}% | {target} |")
    rss = summary["rss_peak_mb"]
    lines.append("")
    lines.append(f"Peak RSS of all server processes: Kinto {fmt(rss['ref'], 0)} MB, "
                 f"kinto-rs {fmt(rss['rs'], 0)} MB (ratio {fmt(summary['rss_ratio'], 3)}, "
                 f"target <= {RSS_RATIO_MAX}).")
    return "\n".join(lines)


def main(argv):
    json_out = None
    paths = []
    i = 0
    while i < len(argv):
        if argv[i] == "--json":
            json_out = argv[i + 1]
            i += 2
        else:
            paths.append(argv[i])
            i += 1
    if not paths:
        print(__doc__, file=sys.stderr)
        return 2
    workload = read_tsv(paths[0])
    ceilings = read_tsv(paths[1]) if len(paths) > 1 else []
    summary = summarize(workload, ceilings)
    print(render(summary))
    if json_out:
        with open(json_out, "w") as f:
            json.dump(summary, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
