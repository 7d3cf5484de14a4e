"""The one table model every view builds, and one renderer per output: Markdown, CSV, HTML
and the terminal (rich). A view says what its columns are (heading, numeric or text, how a
value reads) and hands over rows of raw values; it never writes a table's syntax itself,
the way hyperfine's exporters share one row type.

CSV keeps the raw values (it is data for other programs); the other renderers show each
value through its column's `show`, and a missing value (None or NaN) as the column's
`missing` text.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from html import escape
from typing import Any

MISSING = "–"


# The charts' colours, one per series in turn.
PALETTE = ("#3b6fd8", "#d8793b", "#3ba37a", "#9a4fc4", "#c43b5a", "#5a8f9f")


def fixed(decimals: int, scale: float = 1.0) -> Callable[[float], str]:
    """A number with thousands separators and fixed decimals: fixed(1)(1234.56) == "1,234.6"."""
    return lambda value: f"{value * scale:,.{decimals}f}"


def significant(value: float) -> str:
    """Three significant digits, for a figure that spans magnitudes (a KLD of 1e-6 or of 0.1)."""
    return f"{value:.3g}"


def runner_label(runner: str, synthetic: bool) -> str:
    """A runner as every view names it: the fake runner's figures are marked as not real."""
    return f"{runner} (FAKE)" if synthetic else runner


@dataclass(frozen=True)
class Column:
    heading: str
    numeric: bool = False  # right-aligned
    show: Callable[[Any], str] = str  # a present value as text
    missing: str = MISSING  # the text of a missing value
    html_class: Callable[[Any], str] | None = None  # a cell's own class in HTML, from its value
    html_title: Callable[[Any], str] | None = None  # a cell's tooltip in HTML, from its value


def text(heading: str, show: Callable[[Any], str] = str, **extra) -> Column:
    return Column(heading, False, show, **extra)


def number(heading: str, show: Callable[[Any], str] = str, **extra) -> Column:
    return Column(heading, True, show, **extra)


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


@dataclass(frozen=True)
class Table:
    columns: tuple[Column, ...]
    rows: tuple[tuple, ...]  # raw values, one per column

    @property
    def headings(self) -> list[str]:
        return [c.heading for c in self.columns]

    def cells(self) -> list[list[str]]:
        """Every row as display text."""
        return [[c.missing if _missing(v) else c.show(v) for c, v in zip(self.columns, row)] for row in self.rows]

    def select(self, headings: tuple[str, ...]) -> Table:
        """The named columns only, in that order."""
        index = [self.headings.index(h) for h in headings]
        return replace(
            self,
            columns=tuple(self.columns[i] for i in index),
            rows=tuple(tuple(row[i] for i in index) for row in self.rows),
        )


def md_cell(text: str) -> str:
    """Text that came from records, safe inside a Markdown table (and its prose)."""
    return escape(text).replace("|", "\\|").replace("\n", " ")


def markdown(table: Table) -> list[str]:
    """The table's Markdown lines: heading, alignment, one line per row."""
    lines = [
        "| " + " | ".join(table.headings) + " |",
        "|" + "|".join("---:" if c.numeric else "---" for c in table.columns) + "|",
    ]
    return lines + ["| " + " | ".join(md_cell(c) for c in row) + " |" for row in table.cells()]


def csv(table: Table) -> str:
    """The raw values as CSV (pandas writes the numbers, as every CSV of edgebench always has)."""
    import pandas as pd

    return pd.DataFrame.from_records(list(table.rows), columns=table.headings).to_csv(index=False)


def _attributes(column: Column, value=None) -> str:
    """A cell's class (text columns: "t", left-aligned; then the value's own) and tooltip;
    a heading passes no value."""
    present = not _missing(value)
    classes = ([] if column.numeric else ["t"]) + ([column.html_class(value)] if column.html_class and present else [])
    title = f" title='{escape(column.html_title(value))}'" if column.html_title and present else ""
    return (f" class='{escape(' '.join(classes))}'" if classes else "") + title


def html(table: Table) -> str:
    """The table as HTML, every text escaped."""
    head = "".join(f"<th{_attributes(c)}>{escape(c.heading)}</th>" for c in table.columns)
    body = "".join(
        "<tr>"
        + "".join(f"<td{_attributes(c, v)}>{escape(shown)}</td>" for c, v, shown in zip(table.columns, row, cells))
        + "</tr>"
        for row, cells in zip(table.rows, table.cells())
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def listing(headings: tuple[str, ...], rows) -> Table:
    """A table of text columns, as the listing commands (runners, suites, models, device) show."""
    return Table(tuple(text(h) for h in headings), tuple(tuple(row) for row in rows))


def terminal(table: Table, title: str | None = None, caption: str | None = None):
    """The table for the terminal: a rich Table (rich is imported only when one is drawn)."""
    from rich.table import Table as RichTable

    view = RichTable(title=title, title_justify="left", caption=caption, caption_justify="left")
    for column in table.columns:
        view.add_column(column.heading, justify="right" if column.numeric else "left")
    for row in table.cells():
        view.add_row(*row)
    return view
