"""The run and its clock: validate inputs into a plan, supervise one worker process per
runner (the harness in the worker owns the clock), write each record as it arrives; resume,
the time budget, progress, remote targets over SSH, and checks of the clock itself."""
