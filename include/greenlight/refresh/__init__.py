"""Prod → staging refresh (runbook 001): buckets through the promotion engine's planner, PostgreSQL
tables through a type-correct streaming COPY, then migrations, health checks and verification."""
