"""Analysis of results: loading many results files fast, per-prompt statistics, the sustained
curve, the decode roofline, and verdicts against workload budgets."""
