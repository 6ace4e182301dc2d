"""Prefect flows: composition only. Each reads top to bottom like the stage table."""

import os

# Defaults for a laptop run on Prefect's ephemeral API (a user's own settings win):
# - the first start migrates a fresh SQLite database, which takes longer than the 20 s default;
# - no usage telemetry (its heartbeat races the migrations for the SQLite lock).
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
