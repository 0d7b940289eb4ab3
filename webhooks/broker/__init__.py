"""The broker: the Celery app (:mod:`.app`) and its configuration (:mod:`.config`),
delivery task messages (:mod:`.messages`), the Redis transport (:mod:`.transport`), the
RabbitMQ transport (:mod:`.rabbitmq`), and the Celery and kombu internals relied on
(:mod:`.internals`)."""
