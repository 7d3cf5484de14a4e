"""The data files a user edits under profiles/: prompt suites, run profiles, the model
catalogue, workloads with their latency budgets, device tiers and device profiles."""
