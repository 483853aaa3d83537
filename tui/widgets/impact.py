"""The impact panel beside the preview: what the edited rules would do to the accounts
already signed in, replayed over the connection's recorded sign-ins (`jitprov plan`).

Receives an `Impact` and shows the summary first ("would change N · denied N ·
unchanged N of M recorded"), then the most common changes, then the accounts that
would be denied, with the message and the `deny` line. Every value comes redacted from
the engine (a redacted field's values, and usernames or subjects where the connection
redacts them, read "***"). Nothing here queries anything: the Rules screen plans the
text in a worker and hands the result over.
"""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Label, Static

from tui.widgets.views import Impact


class ImpactPanel(Vertical):
    """The summary line and, below it, a scrollable list of changes and denials."""

    def compose(self) -> ComposeResult:
        yield Label("", id="impact-summary")
        with VerticalScroll(id="impact-body"):
            yield Static("", id="impact-detail")

    def show(self, impact: Impact | None, note: str | None = None) -> None:
        """Show `impact` (None: no plan, `note` says why); a `note` with an impact is
        shown above its details (e.g. "this is the impact of the last text without
        errors")."""
        summary = self.query_one("#impact-summary", Label)
        detail = self.query_one("#impact-detail", Static)
        if impact is None:
            summary.update(Text(note or "", style="italic"))
            detail.update("")
            return
        summary.update(summary_text(impact))
        detail.update(Group(*detail_parts(impact, note)))


def summary_text(impact: Impact) -> Text:
    """The summary line: counts coloured by what they mean."""
    if not impact.recorded:
        return Text(impact.summary, style="italic")
    deny = "bold red" if impact.deny else "dim"
    change = "bold yellow" if impact.change else "dim"
    return Text.assemble(
        ("would change ", ""),
        (f"{impact.change:,}", change),
        (" · denied ", ""),
        (f"{impact.deny:,}", deny),
        (" · unchanged ", ""),
        (f"{impact.same:,}", "" if impact.same else "dim"),
        (f" of {impact.recorded:,} recorded", ""),
    )


def detail_parts(impact: Impact, note: str | None = None) -> list[RenderableType]:
    """Below the summary: the note, the warnings, the groups of changes, the denied
    accounts, then whether saving would ask first."""
    parts: list[RenderableType] = []
    if note and impact.recorded:  # (with nothing recorded, the summary says it all)
        parts.append(Text(note, style="italic yellow"))
    for warning in impact.warnings:
        parts.append(Text(f"⚠ {warning}", style="yellow"))
    if impact.groups:
        parts.append(Text("changes", style="bold"))
        table = Table.grid(padding=(0, 1))
        table.add_column(justify="right", style="bold")
        table.add_column(no_wrap=True)
        table.add_column(style="dim", overflow="ellipsis", no_wrap=True)
        for group in impact.groups:
            style = "red" if group.op == "-" else ""
            examples = ", ".join(group.examples)
            table.add_row(f"{group.count:,}", Text(group.label, style=style), f"e.g. {examples}")
        parts.append(table)
        if impact.more_groups:
            parts.append(
                Text(f"… and {impact.more_groups} more (`jitprov plan` lists them)", style="dim")
            )
    if impact.recorded and not impact.change and not impact.deny:
        parts.append(Text("✔ no recorded account would change or be denied", style="green"))
    if impact.denied:
        parts.append(Text("would be denied", style="bold red"))
        table = Table.grid(padding=(0, 1))
        table.add_column(no_wrap=True)
        table.add_column()
        table.add_column(style="dim", no_wrap=True)
        for denial in impact.denied:
            where = f"← line {denial.line}" if denial.line else ""
            table.add_row(Text(f"✘ {denial.account}", style="red"), Text(denial.message), where)
        parts.append(table)
        if impact.deny > len(impact.denied):
            more = impact.deny - len(impact.denied)
            parts.append(Text(f"… and {more:,} more (`jitprov plan` lists them)", style="dim"))
    if impact.asks_before_saving:
        n = impact.affected
        parts.append(
            Text(
                f"⚠ saving asks first: {n:,} account{'s' * (n != 1)} denied or losing set"
                f" members ({impact.threshold_label})",
                style="bold yellow",
            )
        )
    return parts
