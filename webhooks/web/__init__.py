"""The HTTP side: the JSON API, the console and the portal (``webhooks serve``), and the
portal tokens that open one tenant's view."""
