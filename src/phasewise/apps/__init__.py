"""User-facing applications: the command line (and later the planner report, twin server, scenarios)."""
