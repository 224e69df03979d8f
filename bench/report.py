"""Render ``bench/RESULTS.md`` from the newest result file of each kind in ``bench/results/``.

python -m bench.report
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.common import RESULTS

OUT = RESULTS.parent / "RESULTS.md"
SEARCH_KINDS = [
    "search_rare",
    "search_medium",
    "search_common",
    "page_first",
    "page_middle",
    "page_10000",
]


def newest(pattern: str, results: Path = RESULTS) -> list[dict[str, Any]]:
    latest: dict[str, Path] = {}
    for path in sorted(results.glob(pattern)):
        kind_db = path.stem.split("-", 3)[-1]  # e.g. "search-sqlite"
        latest[kind_db] = path
    return [json.loads(p.read_text()) | {"_file": p.name} for _, p in sorted(latest.items())]


def scale_section(report: dict[str, Any], title: str, unit: str) -> list[str]:
    sizes = list(report["sizes"])
    kinds: list[str] = []
    for size in sizes:
        kinds += [
            k
            for k, v in report["sizes"][size].items()
            if isinstance(v, dict) and "p50_ms" in v and k not in kinds
        ]
    lines = [
        f"### {title} — {report['db']} ({report['date']})",
        "",
        f"`{report['command']}` → `results/{report['_file']}`",
        "",
        "| request | " + " | ".join(f"{int(s):,} {unit} p50 / p99 (ms)" for s in sizes) + " |",
        "|---|" + "---|" * len(sizes),
    ]
    for kind in kinds:
        cells = []
        for size in sizes:
            figure = report["sizes"][size].get(kind)
            cells.append(f"{figure['p50_ms']} / {figure['p99_ms']}" if figure else "n/a")
        lines.append(f"| `{kind}` | " + " | ".join(cells) + " |")
    loads = ", ".join(f"{int(s):,}: {report['sizes'][s]['load_seconds']} s" for s in sizes)
    lines += ["", f"Load time (10,000 rows per transaction): {loads}.", ""]
    largest = max(sizes, key=int)
    for name, profile in report["sizes"][largest].get("profiles", {}).items():
        shares = ", ".join(f"{share:.0%} {where}" for where, share in profile["shares"].items())
        lines += [
            f"Where the server spends `{name}` at {int(largest):,} (py-spy, "
            f"{profile['samples']:,} samples): {shares}.",
            "",
        ]
    return lines


def mmm(figure: dict[str, float], digits: int = 0) -> str:
    fmt = f"{{:,.{digits}f}}"
    return (
        f"{fmt.format(figure['median'])} ({fmt.format(figure['min'])}-{fmt.format(figure['max'])})"
    )


def throughput_section(report: dict[str, Any]) -> list[str]:
    lines = [
        f"### W1-W3 throughput and latency — {report['db']} ({report['date']})",
        "",
        f"`{report['command']}` → `results/{report['_file']}`",
        "",
        "| workload | connections | labelhub req/s | validate-only req/s | bare ASGI req/s "
        "| labelhub / validate | labelhub p50 / p99 ms | validate p50 / p99 ms "
        "| errors (labelhub / validate / bare) "
        "| labelhub peak RSS |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    later = []
    for workload, result in report["workloads"].items():
        if "command" in result:
            later.append(f"{workload}: `{result['command']}` ({result['date']})")
        for connections in ("c64", "c16"):
            section = result.get(connections)
            if not section:
                continue
            lh, va, bare = section["labelhub"], section["validate"], section["bare"]
            lines.append(
                f"| {workload} | {connections[1:]} | {mmm(lh['rps'])} | {mmm(va['rps'])} "
                f"| {mmm(bare['rps'])} | {section['ratio_rps_vs_validate']} "
                f"| {lh['p50_ms']['median']} / {lh['p99_ms']['median']} "
                f"| {va['p50_ms']['median']} / {va['p99_ms']['median']} "
                f"| {lh['errors']} / {va['errors']} / {bare['errors']} "
                f"| {result['labelhub_peak_rss_mb']} MB |"
            )
    lines.append("")
    mlflow = report.get("mlflow_set_tag")
    if mlflow:
        lines += [
            f"Baseline {mlflow['version']} tracking server (one worker, SQLite store), "
            f"`POST /api/2.0/mlflow/registered-models/set-tag` at 64 connections: "
            f"{mmm(mlflow['rps'])} req/s, p50 / p99 {mlflow['p50_ms']['median']} / "
            f"{mlflow['p99_ms']['median']} ms, {mlflow['errors']} errors; "
            f"**W1 / MLflow = {mlflow['ratio_w1_vs_mlflow']} times**.",
            "",
        ]
    if later:
        lines += ["Rows rerun later, after a change, by: " + "; ".join(later), ""]
    return lines


def figures_section(report: dict[str, Any], title: str, unit: str) -> list[str]:
    lines = [
        f"### {title} — {report['db']} ({report['date']})",
        "",
        f"`{report['command']}` → `results/{report['_file']}`",
        "",
        f"| figure | {unit}: median (min-max) |",
        "|---|---|",
    ]
    for name, figure in report["figures"].items():
        if "median" not in figure:
            (figure,) = figure.values()
        lines.append(f"| `{name}` | {mmm(figure)} |")
    lines.append("")
    return lines


def quality_section(report: dict[str, Any]) -> list[str]:
    f = report["figures"]
    shape = f["shape"]
    return [
        f"### Recommendation quality — {report['db']} ({report['date']})",
        "",
        f"`{report['command']}` → `results/{report['_file']}`",
        "",
        f"Synthetic data (`bench/recsys_data.py`, seed {shape['seed']}): {shape['users']:,} users "
        f"in {shape['groups']} groups sharing sequences of {shape['sequence']} actions, "
        f"{shape['assets']:,} assets, {shape['popular']} popular noise actions; each user's last "
        f"{shape['held_out']} events held out.",
        "",
        "| test users | hit-rate@10 labelhub | hit-rate@10 popularity | ratio "
        "| ingest events/s (processed, sync) | actions p50 ms |",
        "|---|---|---|---|---|---|",
        f"| {f['test_users']:,} | {f['hit_rate_at_10_labelhub']} "
        f"| {f['hit_rate_at_10_popularity']} | {f['ratio']} | {f['ingest_events_per_s']:,} "
        f"| {f['actions_p50_ms']} |",
        "",
    ]


def speed_section(report: dict[str, Any]) -> list[str]:
    f = report["figures"]
    ingest, fold, processed = f["ingest_unprocessed"], f["fold_all"], f["ingest_processed"]
    lines = [
        f"### Events and recommendations at scale — {report['db']} ({report['date']})",
        "",
        f"`{report['command']}` → `results/{report['_file']}`",
        "",
        f"{f['users']:,} users, {f['assets']:,} assets, {f['events']:,} events, "
        f"{f['distinct_actions']:,} distinct actions.",
        "",
        "| figure | value |",
        "|---|---|",
        f"| `POST /events` of 1,000, `process_user_actions=false`, {ingest['clients']} clients "
        f"| {mmm(ingest['events_per_s'])} events/s; request p50 / p99 {ingest['p50_ms']} / "
        f"{ingest['p99_ms']} ms |",
        f"| `labelhub events process` (fold all, compute every pool) | {fold['seconds']} s: "
        f"{fold['users_per_s']:,} users/s, {fold['events_per_s']:,} events/s |",
        f"| `POST /events` of 1,000, `process_user_actions=true&queue_updates=false`, 1 client "
        f"| {mmm(processed['events_per_s'])} events/s; request p50 / p99 {processed['p50_ms']} / "
        f"{processed['p99_ms']} ms |",
    ]
    for connections in (1, 16):
        a = f[f"actions_{connections}_connections"]
        lines.append(
            f"| `GET /users/{{id}}/actions`, {connections} connection(s), "
            f"{a['requests_per_run']:,} random users per run | p50 {mmm(a['p50_ms'], 2)} ms, "
            f"p99 {mmm(a['p99_ms'], 2)} ms |"
        )
    lines.append("")
    return lines


def main(results: Path = RESULTS) -> Path:
    lines = [
        "# Benchmark results",
        "",
        "Generated by `python -m bench.report` from the newest files in `results/`; how to rerun: "
        "`README.md`. Medians of the runs (min-max where shown); this machine kind has 2 cores.",
        "",
    ]
    for report in newest("*-raw-*.json", results):
        lines += figures_section(report, "Raw database upserts (baseline)", "per second")
    for report in newest("*-throughput-*.json", results):
        lines += throughput_section(report)
    for report in newest("*-bulk-*.json", results):
        lines += figures_section(report, "W4 big requests end to end", "labels per second")
    for report in newest("*-search-*.json", results):
        lines += scale_section(report, "W5 label search and pages", "labels")
        kind = report["_file"].split("-", 3)[-1].removesuffix(".json")
        lines += [f"![W5 {report['db']}](results/{kind}.png)", ""]
    for report in newest("*-har-*.json", results):
        lines += scale_section(report, "W6 HAR label filter and label listing", "artifacts")
        kind = report["_file"].split("-", 3)[-1].removesuffix(".json")
        lines += [f"![W6 {report['db']}](results/{kind}.png)", ""]
    for report in newest("*-recommend-quality-*.json", results):
        lines += quality_section(report)
    for report in newest("*-recommend-speed-*.json", results):
        lines += speed_section(report)
    out = results.parent / "RESULTS.md" if results == RESULTS else results / "RESULTS.md"
    out.write_text("\n".join(lines))
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    main()
