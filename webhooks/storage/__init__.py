"""Storage: everything kept in Redis, each store handed the one client a
:class:`~webhooks.system.System` builds with :mod:`.connection`.

- :mod:`.connection`    the client (one per System), and what its errors mean
- :mod:`.keys`          every key's name, under the deployment's prefix
- :mod:`.deliveries`    the delivery record: fields, body, attempts, indexes, claims
- :mod:`.endpoints`     endpoints, their secrets and their failure clocks
- :mod:`.cipher`        their secrets and header values encrypted at rest
- :mod:`.tenants`       tenants; deleting one forgets everything it owns
- :mod:`.sessions`      the web sessions of the console and the portal
- :mod:`.schedule`      parked runs, promotion hand-over, attempt claims
- :mod:`.destinations`  per-destination concurrency limit and circuit breaker
- :mod:`.counters`      the metrics' counters, kept by the scripts that record
- :mod:`.activity`      the charts' hourly counters, kept by the same scripts
- :mod:`.scripts` and ``lua/``  the atomic steps, one Lua script each
"""
