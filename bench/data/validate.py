"""`edgebench validate`: check a data file by what it contains."""

from __future__ import annotations

from pathlib import Path

from bench.data import files as datafiles
from bench.data import workloads as workload_data
from bench.errors import BenchError


def validate_file(path: Path) -> str:
    """Load the file as the kind it looks like; return a short description, or raise."""
    from bench.data.models import _Catalogue
    from bench.data.run_profiles import load_profile
    from bench.data.suite import load_suite

    if not path.is_file():
        raise BenchError(f"no such file: {path}", "give the path of a .toml data file")
    table, _ = datafiles.read_toml(path)
    if "prompt" in table:
        suite = load_suite(str(path))
        return f"suite '{suite.id}', {len(suite.prompts)} prompts"
    if "warmups" in table or "repetitions" in table:
        profile = load_profile(str(path))
        return f"run profile '{profile.name}'"
    if "workload" in table:
        return f"workloads, {len(workload_data.load_workloads(path))} workloads"
    if isinstance(table.get("tier"), list):  # a phone profile states its own tier as a string
        return f"device tiers, {len(workload_data.load_tiers(path))} tiers"
    if "sources" in table:
        device = workload_data.load_device_profile(str(path))
        return f"device profile '{device.id}'"
    if "model" in table:
        catalogue = datafiles.build(_Catalogue, table, str(path))
        return f"model catalogue, {len(catalogue.model)} models"
    raise BenchError(
        f"{path}: not a suite ([[prompt]]), run profile (warmups), catalogue ([[model]]), "
        "workloads ([[workload]]), tiers ([[tier]]) or device profile (sources)",
        "see the files under profiles/ for each kind",
    )
