"""Each experiment's ``report.md`` and ``metrics.json``, and the index report of ``fastreg experiment all``.

A report holds: a settings block (scale, data, seeds, extractor, wall time, the command that re-runs
the whole experiment), the claims table (claim | paper | measured | seeds | held, then the rule of
each verdict), the figures, the experiment's own tables, and one row per training run with the exact
``fastreg train`` command that re-runs it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from ..atomic import write_text
from .budget import Scale
from .claims import HELD, INCONCLUSIVE, NOT_HELD, Claim, claims_table, fmt
from ..train.build import describe_discriminator
from ..train.metrics_log import jsonable
from .runs import Run

REPORT = "report.md"
METRICS = "metrics.json"
INDEX = "index.md"


@dataclass
class Report:
    name: str                      # the experiment's CLI name
    title: str
    out: str                       # the experiment's folder
    scale: Scale
    data: str
    seeds: tuple[int, ...]         # the seeds this experiment used
    description: str = ""
    claims: list[Claim] = field(default_factory=list)
    figures: list[tuple[str, str]] = field(default_factory=list)   # (caption, path)
    sections: list[str] = field(default_factory=list)              # markdown lines after the figures
    runs: list[Run] = field(default_factory=list)
    commands: list[tuple[str, str]] = field(default_factory=list)  # (what, command) beyond fastreg train
    settings: dict = field(default_factory=dict)                   # experiment-specific settings
    results: dict = field(default_factory=dict)                    # raw numbers for metrics.json
    seconds: float = 0.0
    rerun: str | None = None       # the command that re-runs it, when it is not `fastreg experiment NAME` (the demo)
    scale_keys: tuple[str, ...] = ()   # the scale's fields the report lists (empty: all)
    departures: list[str] = field(default_factory=list)   # where fastreg departs from the paper, one line each

    def rerun_command(self) -> str:
        if self.rerun:
            return self.rerun
        scale = scale_flag(self.scale)
        seeds = " ".join(str(s) for s in self.scale.seeds)
        out = os.path.dirname(self.out) or "."
        return f"fastreg experiment {self.name}{scale} --data {self.data} --seeds {seeds} --out {out}"

    def figure(self, caption: str, path: str) -> None:
        self.figures.append((caption, path))

    def write(self) -> str:
        """Write report.md and metrics.json into ``out``; returns report.md's path."""
        os.makedirs(self.out, exist_ok=True)
        settings = {"experiment": self.name, "scale": self.scale.name, "data": self.data,
                    "seeds used": list(self.seeds), "FID extractor": self.scale.extractor,
                    **self.settings, "torch threads per process": _threads(),
                    "wall time (s)": round(self.seconds, 1)}
        lines = [f"# {self.title}", "", self.description, ""]
        if self.departures:
            lines += ["Departures from the paper's protocol:", "", *(f"- {d}" for d in self.departures), ""]
        lines += ["## Settings", "", "```"]
        lines += [f"{key}: {value}" for key, value in settings.items()]
        lines += [f"re-run: {self.rerun_command()}", "```", "",
                  f"Scale `{self.scale.name}`: " + ", ".join(f"{k}={v}" for k, v in self.scale.settings().items()
                                                             if k != "name" and (k in self.scale_keys
                                                                                 or not self.scale_keys)), "",
                  "## Claims", "", *claims_table(self.claims), ""]
        if self.figures:
            lines += ["## Figures", ""]
            for caption, path in self.figures:
                lines += [f"{caption}", "", f"![{os.path.basename(path)}]({os.path.relpath(path, self.out)})", ""]
        lines += self.sections
        if self.runs:
            lines += ["", "## Runs", "", "| run | D | seed | final FID | wall time (s) | status | command |",
                      "|---|---|---:|---:|---:|---|---|"]
            for run in self.runs:
                status = run.diverged or "finished"
                lines.append(f"| {run.name} | {describe_discriminator(run.config)} | {run.config.seed} | "
                             f"{fmt(run.final('fid'))} | {run.seconds:.0f} | {status} | `{_command_cell(run)}` |")
        if self.commands:
            lines += ["", "Other re-runnable parts:", ""]
            lines += [f"- {what}: `{cmd}`" for what, cmd in self.commands]
        path = os.path.join(self.out, REPORT)
        write_text(path, "\n".join(lines) + "\n")
        raw = {"experiment": self.name, "title": self.title, "settings": settings, "scale": self.scale.settings(),
               "claims": [c.as_dict() for c in self.claims], "runs": [r.summary() for r in self.runs],
               "results": self.results, "figures": [os.path.relpath(p, self.out) for _, p in self.figures]}
        write_text(os.path.join(self.out, METRICS), json.dumps(jsonable(raw), indent=1))
        return path


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def scale_flag(scale: Scale) -> str:
    """The CLI option that selects ``scale``."""
    return {"quick": " --quick", "full": ""}.get(scale.name, f" --scale {scale.name}")


def _command_cell(run: Run) -> str:
    from .runs import command

    return command(run.config).replace("|", "\\|")


def tally(claims) -> dict:
    counts = {HELD: 0, NOT_HELD: 0, INCONCLUSIVE: 0}
    for c in claims:
        counts[c.held] += 1
    return counts


def write_index(out: str, reports: list[Report], seconds: float, scale: Scale, data: str) -> str:
    """``out/index.md``: a link to each experiment's report, its first figure and its claims table."""
    all_claims = [c for r in reports for c in r.claims]
    counts = tally(all_claims)
    lines = ["# fastreg experiment suite", "",
             f"Scale `{scale.name}`, data `{data}`, seeds {', '.join(map(str, scale.seeds))}; "
             f"wall time {seconds / 60:.1f} min for all {len(reports)} experiments. "
             f"Re-run: `fastreg experiment all{scale_flag(scale)} --data {data} --seeds "
             f"{' '.join(map(str, scale.seeds))}`.", "",
             f"Claims: {counts[HELD]} held, {counts[NOT_HELD]} not held, {counts[INCONCLUSIVE]} inconclusive "
             f"(of {len(all_claims)}). A verdict is decided by the rule printed under each table, from the numbers "
             "measured here; nothing was tuned per seed.", "",
             "| experiment | claims held | not held | inconclusive | wall time (s) |", "|---|---:|---:|---:|---:|"]
    for r in reports:
        c = tally(r.claims)
        link = os.path.relpath(os.path.join(r.out, REPORT), out)
        lines.append(f"| [{r.name}]({link}) | {c[HELD]} | {c[NOT_HELD]} | {c[INCONCLUSIVE]} | {r.seconds:.0f} |")
    for r in reports:
        link = os.path.relpath(os.path.join(r.out, REPORT), out)
        lines += ["", f"## [{r.title}]({link})", "", *claims_table(r.claims), ""]
        if r.figures:
            caption, path = r.figures[0]
            lines += [caption, "", f"![{r.name}]({os.path.relpath(path, out)})", ""]
    lines += ["## Summary", ""]
    for verdict in (HELD, NOT_HELD, INCONCLUSIVE):
        names = [f"{r.name}: {c.claim}" for r in reports for c in r.claims if c.held == verdict]
        lines += [f"**{verdict.capitalize()}** ({len(names)}):", "", *(f"- {n}" for n in names), ""]
    path = os.path.join(out, INDEX)
    write_text(path, "\n".join(lines) + "\n")
    return path
