"""Which runners a command takes, and the settings each gets: `--runner`, `RUNNER=VALUE`
pairs and `--setting RUNNER:KEY=VALUE` overrides, each checked with a one-line error."""

from __future__ import annotations

import os

import psutil

from bench.errors import BenchError, unknown_name
from runners import load_class, registrations


def default_threads() -> int:
    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


def parse_pairs(option: str, specs: tuple[str, ...], example: str) -> dict[str, list[str]]:
    """RUNNER=VALUE options, by runner."""
    parsed: dict[str, list[str]] = {}
    for spec in specs:
        name, sep, value = spec.partition("=")
        if not sep or not name or not value:
            raise BenchError(f"{option} '{spec}' is not RUNNER=VALUE", f"e.g. {option} {example}", exit_code=2)
        parsed.setdefault(name, []).append(value)
    return parsed


def parse_settings(specs: tuple[str, ...]) -> dict[str, dict[str, str]]:
    """--setting RUNNER:KEY=VALUE options, by runner (runner names may hold dots)."""
    parsed: dict[str, dict[str, str]] = {}
    for spec in specs:
        name, colon, rest = spec.partition(":")
        key, equals, value = rest.partition("=")
        if not (colon and equals and name and key and value):
            raise BenchError(
                f"--setting '{spec}' is not RUNNER:KEY=VALUE", "e.g. --setting llama.cpp:flash_attn=off", exit_code=2
            )
        parsed.setdefault(name, {})[key] = value
    return parsed


_TRUE, _FALSE = {"on", "true", "yes", "1"}, {"off", "false", "no", "0"}


def runner_settings(name: str, runner: type, overrides: dict[str, str]) -> dict:
    """The runner's defaults with the user's overrides, each read as its default's type and
    held to the runner's `choices` for that setting, if it declares them."""
    defaults = runner.defaults
    settings = dict(defaults)
    for key, text in overrides.items():
        if key not in defaults:
            known = ", ".join(sorted(defaults)) or "none"
            raise BenchError(f"--setting: {name} has no setting '{key}'", f"{name}'s settings: {known}", exit_code=2)
        default = defaults[key]
        try:
            if isinstance(default, bool):
                if text.lower() not in _TRUE | _FALSE:
                    raise ValueError
                value = text.lower() in _TRUE
            elif isinstance(default, (int, float)):
                value = type(default)(text)
            else:
                value = text
        except ValueError:
            wanted = (
                "on or off"
                if isinstance(default, bool)
                else "a whole number"
                if isinstance(default, int)
                else "a number"
            )
            raise BenchError(
                f"--setting {name}:{key}={text}: {key} takes {wanted}", f"the default is {default!r}", exit_code=2
            ) from None
        allowed = runner.choices.get(key)
        if allowed is not None and value not in allowed:
            raise BenchError(
                f"--setting {name}:{key}={text}: {key} takes one of {', '.join(map(str, allowed))}",
                f"the default is {default!r}",
                exit_code=2,
            )
        settings[key] = value
    return settings


def select_runners(names: tuple[str, ...]) -> list[str]:
    """The named runners (each must be installed), or every available non-hidden one;
    cheapest first (cheapest_first)."""
    regs = registrations()
    for name in names:
        if name not in regs:
            raise unknown_name("runner", name, [n for n, r in regs.items() if not r.hidden])
    if names:
        chosen = list(dict.fromkeys(names))
        for name in chosen:
            probe = load_class(regs[name].target).probe()
            if not probe.available:
                raise BenchError(
                    f"runner '{name}' is not available: {probe.reason}",
                    probe.reason if probe.reason.startswith("pip") else "see `edgebench runners`",
                )
        return cheapest_first(chosen)
    chosen = [n for n, r in regs.items() if not r.hidden and load_class(r.target).probe().available]
    if not chosen:
        raise BenchError("no runner is available on this machine", "see `edgebench runners` for what to install")
    return cheapest_first(chosen)


def cheapest_first(names: list[str]) -> list[str]:
    """Runners in the order a run and `prepare` take them: by what a first export of each
    typically costs (Runner.export_cost), so one that needs none runs at once and the longest
    export comes last; registration order among equals."""
    regs = registrations()
    order = list(regs)
    return sorted(names, key=lambda n: (load_class(regs[n].target).export_cost(), order.index(n)))
