"""PNG plots of the W5 and W6 latency curves against data size, from the newest results.

python -m bench.plots        # writes bench/results/<kind>-<db>.png
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.common import RESULTS
from bench.report import newest


def plot(report: dict[str, Any], title: str, unit: str, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted(int(s) for s in report["sizes"])
    kinds = sorted(
        {
            k
            for s in report["sizes"].values()
            for k, v in s.items()
            if isinstance(v, dict) and "p50_ms" in v
        }
    )
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharex=True)
    for ax, figure in zip(axes, ("p50_ms", "p99_ms"), strict=True):
        for kind in kinds:
            points = [
                (size, report["sizes"][str(size)][kind][figure])
                for size in sizes
                if kind in report["sizes"][str(size)]
            ]
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", label=kind)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(unit)
        ax.set_ylabel(f"{figure[:3]} latency (ms)")
        ax.set_title(figure[:3])
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{title} - {report['db']} ({report['date'][:10]})")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def main(results: Path = RESULTS) -> list[Path]:
    made = []
    for pattern, title, unit in (
        ("*-search-*.json", "W5 label search and pages", "labels in the program"),
        ("*-har-*.json", "W6 HAR label filter and label listing", "artifacts in the registry"),
    ):
        for report in newest(pattern, results):
            kind = report["_file"].split("-", 3)[-1].removesuffix(".json")
            made.append(plot(report, title, unit, results / f"{kind}.png"))
    for path in made:
        print(f"wrote {path}")
    return made


if __name__ == "__main__":
    main()
