"""Analysis of results: loading many results files fast, per-prompt statistics, the sustained
curve and verdicts against workload budgets."""
