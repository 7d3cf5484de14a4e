"""`edgebench device` and `selfcheck`: what this device is, and whether measuring works here."""

from __future__ import annotations

import sys
from typing import List, Optional

import typer

from bench.cli.common import RemoteEdgebench, app, at_least_one_thread, out


@app.command()
def device(
    measure: bool = typer.Option(False, "--bandwidth", help="Measure memory bandwidth here (a copy benchmark, ~2 s)."),
    threads: Optional[int] = typer.Option(
        None,
        "--threads",
        "-t",
        help="Threads the copy runs on; default: physical cores, as a run decodes with.",
        callback=at_least_one_thread,
    ),
    device_profile: Optional[str] = typer.Option(None, "--device-profile", help="A device profile name or .toml path."),
    list_: bool = typer.Option(False, "--list", help="List the packaged device profiles."),
    target: Optional[List[str]] = typer.Option(
        None, "--target", help="ssh://[user@]host[:port] or adb://[SERIAL]: that device's facts instead (repeatable)."
    ),
    remote_edgebench: RemoteEdgebench = None,
) -> None:
    """This device's facts, fingerprint, and the tier it is assigned, and why."""
    if target:
        from bench.run import remote

        args = ["--bandwidth"] * measure + ["--threads", str(threads)] * (threads is not None) + ["--list"] * list_
        for spec, text in remote.device_on_targets(target, remote_edgebench, args, device_profile):
            out.print(f"{spec}:", highlight=False)
            sys.stdout.write(text)
        return
    if list_:
        return _list_device_profiles()

    from bench import selection
    from bench.data import workloads as workload_data
    from bench.device import bandwidth, tiering
    from bench.device.facts import device_facts

    facts = device_facts()
    measured = bandwidth.measure(threads or selection.default_threads()) if measure else None
    profile = workload_data.load_device_profile(device_profile) if device_profile else None
    placement = tiering.place(facts, profile, (lambda: measured) if measured else None)
    out.print(_device_table(facts, measured, placement))
    out.print(f"tier: [bold]{placement.tier}[/]")
    for line in placement.why:
        out.print(f"  {line}")
    out.print(_accelerators_table())


def _list_device_profiles() -> None:
    from bench.data import workloads as workload_data
    from bench.views.table import listing, terminal

    rows = [
        (
            p.id,
            p.name,
            p.device_class,
            p.soc,
            f"{p.ram_gb:g}",
            str(p.cores),
            f"{p.bandwidth_gbs:g}" if p.bandwidth_gbs else None,
        )
        for p in workload_data.device_profiles().values()
    ]
    out.print(terminal(listing(("profile", "name", "class", "SoC", "RAM GB", "cores", "GB/s"), rows)))


def _device_table(facts: dict, measured, placement):
    """The device's facts, the bandwidth measured and the tiering's fields."""
    from bench.views.table import listing, terminal

    rows = [(key.removeprefix("device_"), value) for key, value in facts.items()]
    if measured:
        rows.append(
            (
                "bandwidth (copy)",
                f"{measured.gbs:g} GB/s best, {measured.median_gbs:g} median "
                f"({measured.passes} passes of {measured.buffer_mb} MB on {measured.threads} threads)",
            )
        )
    rows += list(placement.record_fields().items())
    return terminal(listing(("fact", "value"), rows), "device")


def _accelerators_table():
    from bench.device.facts import runtime_accelerators
    from bench.views.table import listing, terminal

    rows = [
        (runtime, kind, what)
        for runtime, kinds in runtime_accelerators().items()
        for kind, what in (kinds.items() if isinstance(kinds, dict) else [(None, kinds)])
    ]
    return terminal(
        listing(("runtime", "accelerator", "as the runtime names it"), rows),
        "accelerators each runtime can use here (--accelerator RUNNER=KIND)",
    )


@app.command()
def selfcheck(
    runner: Optional[List[str]] = typer.Option(
        None,
        "--runner",
        "-r",
        help="Runner to check (repeatable); default: every available one with an artifact ready.",
    ),
    threads: Optional[int] = typer.Option(None, "--threads", "-t", help="Default: physical cores."),
    llama_bench: Optional[str] = typer.Option(
        None,
        "--llama-bench",
        help="Path of a llama-bench binary, or 'off'; "
        "default: the one scripts/build-llama-bench.sh built, when present.",
    ),
) -> None:
    """Fidelity benchmark: harness figures vs each runtime's own timers (and llama-bench), in one run."""
    from bench import selection
    from bench.run.selfcheck import DECODE_RATIO_TARGET, run_selfcheck
    from bench.views.table import listing, terminal

    found = run_selfcheck(tuple(runner or ()), threads or selection.default_threads(), out, llama_bench)
    rows = [
        (r.runner, r.probe, r.figure, f"{r.harness:,.1f}", f"{r.runtime:,.1f}", f"{r.ratio:.3f}") for r in found.rows
    ]
    headings = ("runner", "probe", "figure", "harness", "runtime's own", "ratio")
    out.print(terminal(listing(headings, rows), "harness vs runtime"))
    for name in found.silent:
        out.print(f"{name}: the runtime times nothing itself; only the harness clock measures it")
    if found.llama_bench_rows:
        rows = [
            (r["test"], f"{r['edgebench_tok_s']:,.1f}", f"{r['llama_bench_tok_s']:,.1f}", f"{r['ratio']:.3f}")
            for r in found.llama_bench_rows
        ]
        title = "llama.cpp vs llama-bench (same GGUF, threads and settings; interleaved rounds)"
        out.print(terminal(listing(("test", "edgebench tok/s", "llama-bench tok/s", "ratio"), rows), title))
    if found.llama_bench != "off":
        out.print(f"llama-bench: {found.llama_bench}")
    out.print(f"harness cost per token (empty stream): {found.harness_cost_us:.2f} µs")
    out.print(f"target: decode ratio >= {DECODE_RATIO_TARGET}: " + ("[green]met[/]" if found.ok else "[red]not met[/]"))
    if not found.ok:
        raise typer.Exit(1)
