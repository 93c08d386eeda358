"""HTTP routes: recs.py (the /api/recs surface) and ops.py (health, readiness, metrics)."""
