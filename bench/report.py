"""The results: latest.json (one entry per target), latest.md (tables) and latest.png (chart)."""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "<": operator.lt,
    "==": operator.eq,
}


@dataclass(frozen=True)
class Entry:
    """One target: `value` held against `limit`, the ratio compared with `target`."""

    name: str
    figure: str
    value: float
    limit: float
    target: str  # "<op> <number>", about the ratio

    @property
    def ratio(self) -> float:
        return self.value / self.limit if self.limit else float("inf")

    @property
    def met(self) -> bool:
        op, threshold = self.target.split(" ", 1)
        return COMPARE[op](self.ratio, float(threshold))

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "figure": self.figure,
            "value": round(self.value, 3),
            "limit": round(self.limit, 3),
            "ratio": round(self.ratio, 3),
            "target": self.target,
            "met": self.met,
        }


@dataclass(frozen=True)
class Pair:
    """Two figures measured side by side, for the chart and the details table."""

    scenario: str
    kind: str  # "throughput" (per second) or "latency" (ms)
    label: str  # what the figure is, e.g. "p99" or "requests/s"
    value_name: str
    value: float
    limit_name: str
    limit: float


@dataclass
class Report:
    entries: list[Entry] = field(default_factory=list)
    pairs: list[Pair] = field(default_factory=list)
    round_trips: list[tuple[str, int, int, str]] = field(default_factory=list)  # route, data, limiter, commands
    notes: list[str] = field(default_factory=list)

    @property
    def met(self) -> bool:
        return all(entry.met for entry in self.entries)

    def write(self, directory: Path, stem: str) -> list[Path]:
        directory.mkdir(parents=True, exist_ok=True)
        paths = [directory / f"{stem}.json", directory / f"{stem}.md", directory / f"{stem}.png"]
        paths[0].write_text(
            json.dumps({"scenarios": [e.as_json() for e in self.entries]}, indent=2, ensure_ascii=False) + "\n"
        )
        paths[1].write_text(self.markdown())
        chart(self.pairs, paths[2])
        return paths

    def markdown(self) -> str:
        lines = [
            "| scenario | figure | value | limit | ratio | target | met |",
            "|---|---|---:|---:|---:|---|---|",
        ]
        for e in self.entries:
            lines.append(
                f"| {e.name} | {e.figure} | {number(e.value)} | {number(e.limit)} | {e.ratio:.2f} | {e.target} "
                f"| {'yes' if e.met else '**no**'} |"
            )
        lines += ["", "Medians of the runs, measured side by side:", ""]
        lines += ["| scenario | figure | measured | value | against | value |", "|---|---|---|---:|---|---:|"]
        for p in self.pairs:
            value, limit = number(p.value), number(p.limit)
            lines.append(f"| {p.scenario} | {p.label} | {p.value_name} | {value} | {p.limit_name} | {limit} |")
        lines += ["", "Store commands per request (scenario 7):", ""]
        lines += ["| route | data | rate limiter | commands |", "|---|---:|---:|---|"]
        lines += [
            f"| `{route}` | {data} | {limiter} | {commands} |" for route, data, limiter, commands in self.round_trips
        ]
        if self.notes:
            lines += ["", *[f"- {note}" for note in self.notes]]
        return "\n".join(lines) + "\n"


def number(value: float) -> str:
    if value == int(value) and abs(value) >= 1:
        return f"{int(value):,}"
    return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.2f}"


def chart(pairs: Sequence[Pair], path: Path) -> None:
    """Per scenario, a column: throughput above, latency below, each beside its limit."""
    import matplotlib

    matplotlib.use("Agg")  # no display: render straight to the file
    import matplotlib.pyplot as plt

    scenarios = list(dict.fromkeys(p.scenario for p in pairs))
    columns = max(1, len(scenarios))
    figure, axes = plt.subplots(2, columns, figsize=(2.3 * columns + 1, 7.5), squeeze=False)
    for column, scenario in enumerate(scenarios):
        for row, kind in enumerate(("throughput", "latency")):
            axis = axes[row][column]
            shown = [p for p in pairs if p.scenario == scenario and p.kind == kind]
            if not shown:
                axis.axis("off")
                continue
            p = shown[0]
            bars = axis.bar([0, 1], [p.value, p.limit], color=["#3b6ea8", "#b0b0b0"], width=0.7)
            for bar, value in zip(bars, (p.value, p.limit), strict=True):
                axis.annotate(
                    f"{number(value)}", (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center",
                    va="bottom", fontsize=8,
                )  # fmt: skip
            axis.set_xticks([0, 1], [p.value_name, p.limit_name], fontsize=7)
            axis.tick_params(axis="y", labelsize=7)
            axis.margins(y=0.18)
            ratio = p.value / p.limit if p.limit else float("inf")
            axis.set_title(f"{p.label}: {ratio:.2f}x", fontsize=8)
            if column == 0:
                axis.set_ylabel("per second" if kind == "throughput" else "ms", fontsize=8)
        axes[0][column].text(
            0.5, 1.18, scenario.replace(": ", ":\n").replace(" /api", "\n/api"), transform=axes[0][column].transAxes,
            ha="center", va="bottom", fontsize=8, fontweight="bold",
        )  # fmt: skip
    figure.suptitle(
        "chat_api benchmark: throughput (top) and latency (bottom) of each scenario, beside its limit (grey)",
        fontsize=10,
    )
    figure.tight_layout(rect=(0, 0, 1, 0.95))
    figure.savefig(path, dpi=110)
    plt.close(figure)
