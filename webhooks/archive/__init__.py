"""The delivery log's second tier: finished deliveries in PostgreSQL (the ``archive``
extra), written by the archiver (:mod:`webhooks.worker.archiver`) and read by the
delivery store beside Redis. See :mod:`.store` and ``schema.sql``."""
