"""The worker's web side, on one port (``settings.web``): Prometheus ``/metrics``,
``/healthz``, ``/readyz`` and a server-rendered status page (mailboxes, a page per mailbox,
recent conflicts and alerts)."""
