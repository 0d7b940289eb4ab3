"""Integrations with the producer's framework: Django and SQLAlchemy (optional extras)."""
