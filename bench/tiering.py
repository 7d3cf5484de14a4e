"""Which device a run measures on, which tier that device belongs to, and why.

A run on a farm device names its device profile (`--device-profile`): its class, spec
figures and bandwidth label the records. Without one, the tier comes from this machine's
own facts and a bandwidth measured here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from bench import targets


@dataclass(frozen=True)
class Placement:
    device_profile: str | None
    device_class: str | None
    tier: str | None
    bandwidth_gbs: float | None
    bandwidth_source: str | None
    why: tuple[str, ...]

    def record_fields(self) -> dict:
        return {"device_profile": self.device_profile, "device_class": self.device_class, "tier": self.tier,
                "bandwidth_gbs": self.bandwidth_gbs, "bandwidth_source": self.bandwidth_source}


def place(facts: dict, profile: targets.DeviceProfile | None,
          measure_bandwidth: Callable[[], float] | None) -> Placement:
    """The device's tier: from the device profile's figures when one is named, else from
    the facts; bandwidth from the profile, else measured (when a measurer is given)."""
    bandwidth, source = None, None
    if profile and profile.bandwidth_gbs:
        bandwidth, source = profile.bandwidth_gbs, f"device profile {profile.id} (spec)"
    elif measure_bandwidth:
        bandwidth, source = measure_bandwidth(), "measured (memory copy, best pass)"
    if profile:
        ram, cores, device_class = profile.ram_gb, profile.cores, profile.device_class or None
    else:
        ram, cores, device_class = facts.get("device_ram_gb"), facts.get("device_cores_logical"), None
    tier, why = targets.assign_tier(targets.load_tiers(), ram_gb=ram, cores=cores,
                                    bandwidth_gbs=bandwidth, device_class=device_class)
    return Placement(profile.id if profile else None, device_class, tier.id if tier else None,
                     bandwidth, source, tuple(why))
