"""The device and its sensors: facts about the machine, temperatures, frequencies, power and
load as the OS exposes them, the worker's memory and CPU, memory bandwidth and the decode
roofline it sets, accelerators, which tier the device belongs to, and thermal hygiene
between runners."""
