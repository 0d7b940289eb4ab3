"""Storage: everything kept in Redis, each store handed the one client of :mod:`.connection`.

- :mod:`.deliveries`  the delivery record: fields, body, attempts, indexes, claims
- :mod:`.endpoints`   endpoints and their secrets
- :mod:`.schedule`    parked runs, promotion hand-over, attempt claims
- :mod:`.isolation`   per-destination concurrency limit and circuit breaker
- :mod:`.keys`        every key's name; :mod:`.scripts` and ``lua/`` the atomic steps
"""
