"""Views of the results: reports (Markdown, CSV, HTML, terminal), the tiered device matrix,
compare (a CI gate), JUnit, the sustained pictures and the run's closing summary."""
