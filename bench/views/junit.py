"""Verdicts as JUnit XML, the format CI systems show as test results."""

from __future__ import annotations

from dataclasses import dataclass
from xml.etree import ElementTree as ET


@dataclass(frozen=True)
class Case:
    suite: str  # groups cases, e.g. "tier.device"
    name: str
    outcome: str  # pass, fail, marginal, or unchecked / n/a (shown as skipped: nothing was judged)
    message: str = ""


def to_xml(title: str, cases: list[Case]) -> str:
    root = ET.Element("testsuites", name=title)
    suites: dict[str, ET.Element] = {}
    for case in cases:
        if case.suite not in suites:
            suites[case.suite] = ET.SubElement(root, "testsuite", name=case.suite)
        node = ET.SubElement(suites[case.suite], "testcase", classname=case.suite, name=case.name)
        if case.outcome == "fail":
            ET.SubElement(node, "failure", message=case.message or "fail").text = case.message
        elif case.outcome in ("n/a", "unchecked"):
            ET.SubElement(node, "skipped", message=case.message or "not measured")
        elif case.message:
            ET.SubElement(node, "system-out").text = f"{case.outcome}: {case.message}"
    for node in [root, *suites.values()]:
        cases_ = list(node.iter("testcase"))
        node.set("tests", str(len(cases_)))
        node.set("failures", str(sum(1 for c in cases_ if c.find("failure") is not None)))
        node.set("skipped", str(sum(1 for c in cases_ if c.find("skipped") is not None)))
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
