"""The results: latest.json (one entry per target), latest.md (tables) and latest.png (chart)."""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

COMPARE: dict[str, Callable[[float, float], bool]] = {">=": operator.ge, "<=": operator.le, "==": operator.eq}


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
        return COMPARE[op](round(self.ratio, 3), float(threshold))

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
        paths[0].write_text(json.dumps({"scenarios": [e.as_json() for e in self.entries]}, indent=2) + "\n")
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
    import matplotlib

    matplotlib.use("Agg")  # no display: render straight to the file
    import matplotlib.pyplot as plt

    kinds = [
        ("throughput", "throughput (per second, higher is better)"),
        ("latency", "latency in ms (lower is better)"),
    ]
    figure, axes = plt.subplots(2, 1, figsize=(11, 8.5))
    for axis, (kind, title) in zip(axes, kinds, strict=True):
        shown = [p for p in pairs if p.kind == kind]
        positions = range(len(shown))
        width = 0.38
        values = axis.bar([x - width / 2 for x in positions], [p.value for p in shown], width, color="#3b6ea8")
        limits = axis.bar([x + width / 2 for x in positions], [p.limit for p in shown], width, color="#b0b0b0")
        for bar, p in zip(values, shown, strict=True):
            axis.annotate(p.value_name, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center",
                          va="bottom", fontsize=7)  # fmt: skip
        for bar, p in zip(limits, shown, strict=True):
            axis.annotate(p.limit_name, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center",
                          va="bottom", fontsize=7)  # fmt: skip
        axis.set_xticks(list(positions), [f"{p.scenario}\n({p.label})" for p in shown], fontsize=8)
        axis.set_title(title, fontsize=10)
        axis.legend([values, limits], ["measured", "its limit / reference"], fontsize=8, loc="upper right")
        axis.margins(y=0.15)
    figure.suptitle("chat_api benchmark: each figure beside what it is held against", fontsize=11)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
