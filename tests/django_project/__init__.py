"""A Django project as a producer would have one: settings, and an app whose
migration creates the outbox table the way the README says to."""
