"""Scheduled jobs: thin entry points that open a session, call one service and commit.

Each job records a `job_run` row (running, then succeeded or failed with the reason) in its own
transaction, separate from the work, so a failed job leaves its work rolled back but its failure
on record.
"""
