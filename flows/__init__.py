"""Kiln flows: the Prefect retrain and tune flows, their wiring of the stages, and the `kiln` CLI."""

import os

# Prefect reads these when it is imported, and every flow module imports it: set them here, first.
# Route the stages' loggers through Prefect's handlers; give the temporary server time for its first
# database migration on 2 cores; no telemetry (offline hosts).
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "training,compression,serving,flows")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")  # stage logs outside a flow run
