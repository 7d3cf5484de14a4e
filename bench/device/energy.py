"""Energy per token of one generation: the device's energy counter over the generation minus
the idle draw measured just before it, divided by the tokens it generated; or why not.

Two kinds of counter (bench.device.sensors.Energy): a hardware one (RAPL powercap on Linux
hosts), which two readings bracket exactly, and a phone's battery V×I read over adb, which
is a series of readings the meter takes itself every `reader.energy_poll_s` while it
measures. A series with too few readings in the generation is refused (the figure would be
the readings' timing, not the draw), as is a device that gives no counter at all (the
reader says why: charging, no current_now, no RAPL, root-only RAPL).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable

from bench.device.sensors import DeviceReader, Energy, energy_delta_j

# The idle window, after letting the previous generation's tail settle (a runtime's thread
# pool spins on for a while after its last token): a series of readings (True) needs longer
# than a counter (False).
SETTLE_S = {True: 0.5, False: 0.1}
IDLE_S = {True: 1.0, False: 0.25}
MIN_READINGS = 4  # readings inside a generation for its figure to follow the draw, not its edges


@dataclass(frozen=True)
class GenerationEnergy:
    """A record's energy fields: the figure and how it was obtained, or why there is none."""

    j_per_token: float | None = None
    joules: float | None = None  # the generation's energy above the idle draw
    idle_w: float | None = None  # the idle draw subtracted
    source: str | None = None  # the counter and how it was read
    refused: str | None = None  # why there is no figure

    def record_fields(self) -> dict:
        return {
            "energy_j_per_token": self.j_per_token,
            "energy_j": self.joules,
            "idle_power_w": self.idle_w,
            "energy_source": self.source,
            "energy_refused": self.refused,
        }


@dataclass(frozen=True)
class Span:
    """The counter at both ends of a span of the parent's monotonic clock."""

    before: Energy
    after: Energy
    seconds: float

    @property
    def joules(self) -> float | None:
        return energy_delta_j(self.before, self.after)

    @property
    def readings(self) -> int | None:
        return None if self.before.readings is None else self.after.readings - self.before.readings


def net_energy(idle: Span, generation: Span, new_tokens: int) -> GenerationEnergy:
    """The generation's energy above the idle draw, per generated token (prefill included:
    it is part of what producing those tokens cost)."""
    sampled = generation.readings is not None
    if sampled and generation.readings < MIN_READINGS:
        return GenerationEnergy(
            refused=f"{generation.readings} power readings in the {generation.seconds:.2f} s generation: too coarse "
            f"for its length (needs {MIN_READINGS})",
            source=generation.after.source,
        )
    if sampled and idle.readings < 2:
        return GenerationEnergy(refused=f"{idle.readings} power readings while idle: no idle draw to subtract")
    idle_j, spent_j = idle.joules, generation.joules
    if idle_j is None or spent_j is None or idle.seconds <= 0:
        return GenerationEnergy(refused="the energy counter went backwards (reset or wrapped twice)")
    idle_w = idle_j / idle.seconds
    above = spent_j - idle_w * generation.seconds
    how = f"{generation.after.source}, idle {idle_w:.3g} W subtracted"
    how += f", {generation.readings} readings" if sampled else ""
    if above <= 0 or not new_tokens:
        return GenerationEnergy(
            idle_w=round(idle_w, 4),
            source=how,
            refused=f"the generation drew no more than idle ({spent_j / generation.seconds:.3g} W against "
            f"{idle_w:.3g} W): the readings cannot tell them apart"
            if new_tokens
            else "no tokens generated",
        )
    return GenerationEnergy(round(above / new_tokens, 6), round(above, 6), round(idle_w, 4), how)


class EnergyMeter:
    """Meters generations on `reader`: idle() just before each (blocking for the idle
    window), start() as it begins, stop() as it ends. A sampled counter is read every
    `reader.energy_poll_s` by a thread meanwhile."""

    def __init__(
        self,
        reader: DeviceReader,
        clock: Callable[[], float] = time.monotonic,
        idle_s: float | None = None,
    ) -> None:
        self.reader, self.clock = reader, clock
        self.poll_s = reader.energy_poll_s
        self.idle_s = idle_s if idle_s is not None else IDLE_S[self.poll_s is not None]
        self.settle_s = SETTLE_S[self.poll_s is not None] if idle_s is None else 0.0
        self._idle: Span | None = None
        self._start: tuple[Energy, float] | None = None
        self._polling: threading.Event | None = None

    def available(self) -> GenerationEnergy | None:
        """None when there is a counter to meter with; otherwise the refusal for every record."""
        return None if self.reader.energy() is not None else GenerationEnergy(refused=self.reader.energy_refusal())

    def _read(self) -> tuple[Energy | None, float]:
        return self.reader.energy(), self.clock()

    def idle(self) -> None:
        """Measure the idle draw now, for idle_s seconds once the last generation settled."""
        self._idle = None
        time.sleep(self.settle_s)
        before, t0 = self._read()
        if before is None:
            return
        deadline = t0 + self.idle_s
        while self.clock() < deadline:
            time.sleep(min(self.poll_s or self.idle_s, max(0.0, deadline - self.clock())))
            self.reader.energy()
        after, t1 = self._read()
        if after is not None:
            self._idle = Span(before, after, t1 - t0)

    def start(self) -> None:
        if self._polling:  # a generation that never ended (its worker died)
            self._polling.set()
        energy, at = self._read()
        self._start = (energy, at) if energy is not None else None
        if self._start and self.poll_s:
            self._polling = threading.Event()
            threading.Thread(target=self._poll, args=(self._polling,), name="edgebench-energy", daemon=True).start()

    def _poll(self, stop: threading.Event) -> None:
        while not stop.wait(self.poll_s):
            self.reader.energy()

    def stop(self, new_tokens: int) -> GenerationEnergy:
        """The generation that start() began has ended, having generated `new_tokens`."""
        if self._polling:
            self._polling.set()
            self._polling = None
        after, at = self._read()
        if self._start is None or after is None:
            return GenerationEnergy(refused=self.reader.energy_refusal())
        if self._idle is None:
            return GenerationEnergy(refused="no idle draw was measured before the generation")
        before, began = self._start
        self._start = None
        return net_energy(self._idle, Span(before, after, at - began), new_tokens)
