"""Bar charts of one workload of a benchmark run, as a dependency-free SVG for the docs.

    python -m benchmarks.plot benchmarks/results-2026-11-29-final.jsonl \
        --workload "W2 drain 10000 no-op jobs" --out docs/images/bench-w2-drain.svg

One bar per system: the median, with a line from the run's min to its max. Labels are the
systems as the run named them (without their parenthesised settings).
"""

from __future__ import annotations

import argparse
import json
from html import escape
from pathlib import Path

WIDTH = 760
LABEL_WIDTH = 300
BAR_HEIGHT = 22
GAP = 10
TOP = 40


def short_label(system: str) -> str:
    """The system without its parenthesised settings, cut at a comma if still long."""
    label = system.split("(", 1)[0].strip()
    return label if len(label) <= 40 else label.split(",", 1)[0].strip()


def chart(rows: list[dict[str, object]], title: str, unit: str) -> str:
    """An SVG of horizontal bars, one per row (already in display order)."""
    biggest = max(float(str(row["max"])) for row in rows)
    scale = (WIDTH - LABEL_WIDTH - 90) / biggest
    height = TOP + len(rows) * (BAR_HEIGHT + GAP) + 20
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="13">',
        f'<rect width="{WIDTH}" height="{height}" fill="white"/>',
        f'<text x="10" y="22" font-size="15" font-weight="bold">{escape(title)}</text>',
    ]
    for index, row in enumerate(rows):
        y = TOP + index * (BAR_HEIGHT + GAP)
        median, low, high = (float(str(row[key])) for key in ("median", "min", "max"))
        system = str(row["system"])
        ours = system.startswith("scheduler")
        colour = "#3f51b5" if ours else ("#9e9e9e" if system.startswith("raw") else "#ff9800")
        mid = y + BAR_HEIGHT / 2
        parts += [
            f'<text x="{LABEL_WIDTH - 8}" y="{mid + 4:.1f}" text-anchor="end">'
            f"{escape(short_label(system))}</text>",
            f'<rect x="{LABEL_WIDTH}" y="{y}" width="{median * scale:.1f}" '
            f'height="{BAR_HEIGHT}" fill="{colour}"/>',
            f'<line x1="{LABEL_WIDTH + low * scale:.1f}" x2="{LABEL_WIDTH + high * scale:.1f}" '
            f'y1="{mid:.1f}" y2="{mid:.1f}" stroke="black" stroke-width="1.5"/>',
            f'<text x="{LABEL_WIDTH + high * scale + 6:.1f}" y="{mid + 4:.1f}">'
            f"{median:,.0f} {escape(unit)}</text>",
        ]
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="a JSON-lines file written by benchmarks.run")
    parser.add_argument("--workload", required=True, help="the workload's name, exactly")
    parser.add_argument("--title", help="the chart's title (default: the workload)")
    parser.add_argument("--out", type=Path, required=True, help="the SVG file to write")
    args = parser.parse_args()
    rows = [
        row
        for line in args.results.read_text().splitlines()
        if line.strip() and (row := json.loads(line))["workload"] == args.workload
    ]
    if not rows:
        raise SystemExit(f"no result of workload {args.workload!r} in {args.results}")
    rows.sort(key=lambda row: -float(row["median"]))
    units = {str(row["unit"]) for row in rows}
    args.out.write_text(chart(rows, args.title or args.workload, "/".join(sorted(units))))
    print(f"wrote {args.out} ({len(rows)} systems)")


if __name__ == "__main__":
    main()
