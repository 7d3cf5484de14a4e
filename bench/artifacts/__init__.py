"""Artifacts: `prepare` turns a model's source into each runtime's format with that runtime's
own exporter, caches it under a key of what the exporter does, and `bundle` carries
prepared artifacts to another machine."""
