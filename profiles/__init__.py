"""Data files (suites, run profiles, model catalogue); a package only so that they install."""
