"""Which device a run measures on, which tier that device belongs to, and why.

A run on a farm device names its device profile (`--device-profile`): its class, spec
figures and bandwidth label the records. Without one, the tier comes from this machine's
own facts and a bandwidth measured here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from bench.data import workloads
from bench.device import bandwidth


@dataclass(frozen=True)
class Placement:
    device_profile: str | None
    device_class: str | None
    tier: str | None
    bandwidth_gbs: float | None
    bandwidth_source: str | None  # starts with "datasheet" or "measured": MBUs of the two never mix
    why: tuple[str, ...]
    bandwidth_threads: int | None = None  # threads the measured copy ran on

    def record_fields(self) -> dict:
        return {
            "device_profile": self.device_profile,
            "device_class": self.device_class,
            "tier": self.tier,
            "bandwidth_gbs": self.bandwidth_gbs,
            "bandwidth_source": self.bandwidth_source,
            "bandwidth_threads": self.bandwidth_threads,
        }


def place(
    facts: dict, profile: workloads.DeviceProfile | None, measure_bandwidth: Callable[[], bandwidth.Bandwidth] | None
) -> Placement:
    """The device's tier: from the device profile's figures when one is named, else from
    the facts; bandwidth from the profile (a datasheet peak), else measured here (when a
    measurer is given) with the run's thread count."""
    figure, source, threads = None, None, None
    if profile and profile.bandwidth_gbs:
        figure, source = profile.bandwidth_gbs, f"datasheet (device profile {profile.id})"
    elif measure_bandwidth:
        measured = measure_bandwidth()
        figure, source, threads = measured.gbs, bandwidth.SOURCE, measured.threads
    if profile:
        ram, cores, device_class = profile.ram_gb, profile.cores, profile.device_class or None
    else:
        ram, cores, device_class = facts.get("device_ram_gb"), facts.get("device_cores_logical"), None
    tiers = workloads.load_tiers()
    tier, why = workloads.assign_tier(tiers, ram_gb=ram, cores=cores, bandwidth_gbs=figure, device_class=device_class)
    # A phone's own tier is its SoC's class, which its RAM and core count do not tell.
    by_soc = profile if profile and profile.tier else workloads.phone_profile_for_soc(facts.get("device_cpu_model"))
    if by_soc:
        tier = next(t for t in tiers if t.id == by_soc.tier)
        why = [f"{tier.id}: the tier of its SoC, {by_soc.soc}, as device profile {by_soc.id} states it"]
    return Placement(
        profile.id if profile else None, device_class, tier.id if tier else None, figure, source, tuple(why), threads
    )
