"""edgebench core. Never imports a runtime library: runners are loaded in workers."""
