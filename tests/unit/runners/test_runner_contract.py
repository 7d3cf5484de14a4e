"""Every registered runner declares its facts on its own class (and its exporter), and they
agree with each other: the core asks the registry and holds no table of runtimes. Nothing
here loads a model or imports a runtime."""

from __future__ import annotations

import math
import re

import pytest

from bench import selection
from bench.artifacts import families
from bench.errors import BenchError
from bench.run.selfcheck import FIGURES
from runners import load_class, registrations
from runners.base import Runner

REGISTERED = registrations()
RUNNERS = pytest.mark.parametrize("name", list(REGISTERED))
EXPORTING = pytest.mark.parametrize("name", [n for n, r in REGISTERED.items() if load_class(r.target).exporter])


def _cls(name: str) -> type[Runner]:
    return load_class(REGISTERED[name].target)


@RUNNERS
def test_the_class_is_a_runner_under_its_registered_name(name):
    cls = _cls(name)
    assert issubclass(cls, Runner) and cls.name == name
    assert all(isinstance(getattr(cls, a), str) for a in ("artifact_kind", "package", "distribution", "extra"))


@RUNNERS
def test_each_setting_with_choices_has_a_default_among_them_of_the_same_type(name):
    """A value `--setting` reads as its default's type can then be found among the choices."""
    cls = _cls(name)
    assert set(cls.choices) <= set(cls.defaults), set(cls.choices) - set(cls.defaults)
    for key, allowed in cls.choices.items():
        default = cls.defaults[key]
        assert isinstance(allowed, tuple) and default in allowed, (key, allowed)
        assert {type(v) for v in allowed} == {type(default)}, key


@RUNNERS
def test_a_value_outside_the_choices_is_refused_and_each_choice_is_taken(name):
    cls = _cls(name)
    for key, allowed in cls.choices.items():
        for value in allowed:
            assert selection.runner_settings(name, cls, {key: str(value)})[key] == value
        outside = "off-the-list" if isinstance(allowed[0], str) else str(max(allowed) + 1)
        with pytest.raises(BenchError) as refused:
            selection.runner_settings(name, cls, {key: outside})
        assert refused.value.exit_code == 2
        assert refused.value.message.endswith(f"{key} takes one of {', '.join(map(str, allowed))}")


@RUNNERS
def test_runtime_figures_are_ones_selfcheck_sets_beside_the_harness(name):
    figures = _cls(name).runtime_figures
    assert len(set(figures)) == len(figures)
    assert set(figures) <= {key for key, _ in FIGURES.values()}


@EXPORTING
def test_an_exporter_declares_a_typical_time_for_each_quantization(name):
    exporter = _cls(name).exporter
    assert exporter.default_quantization in exporter.quantizations
    assert set(exporter.typical_seconds) == set(exporter.quantizations)
    assert all(seconds > 0 for seconds in exporter.typical_seconds.values())
    assert _cls(name).export_cost() == exporter.typical_seconds[exporter.default_quantization]


@EXPORTING
def test_an_exporters_legacy_key_names_a_function_and_a_source_digest(name):
    legacy = _cls(name).exporter.legacy_key
    if legacy is not None:
        target, code = legacy
        assert re.fullmatch(r"[\w.]+:\w+", target) and re.fullmatch(r"[0-9a-f]{64}", code)


@EXPORTING
def test_an_exporter_declares_families_only_at_quantizations_it_offers(name):
    exporter = _cls(name).exporter
    module, _, function = exporter.target.partition(":")
    assert callable(getattr(__import__(module, fromlist=[function]), function))
    for family, cell in families.family_support(exporter).items():
        assert isinstance(cell, str) or set(cell) <= set(exporter.quantizations), family


def test_runners_that_need_no_export_run_first_then_the_cheapest_exports():
    ordered = selection.cheapest_first(list(REGISTERED))
    costs = [_cls(name).export_cost() for name in ordered]
    assert costs == sorted(costs)
    readers = [name for name in ordered if _cls(name).exporter is None]
    assert ordered[: len(readers)] == readers and all(c == 0 for c in costs[: len(readers)])
    assert all(0 < c < math.inf for c in costs[len(readers) :])
