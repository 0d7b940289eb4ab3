"""Sending: one HTTP attempt (:mod:`.attempt`) over a pinned, deadline-bounded
transport (:mod:`.transport`) that connects only where :mod:`webhooks.guard` allows."""
