"""The moderation-queue worker, ``python -m service.worker``: posts from a Redis stream in, one
result per post out, classified in process with the service's own classification path.

``stream`` is its Redis I/O (the atomic write-and-acknowledge steps), ``consumer`` the loop,
``metrics`` what it counts, ``main`` the command. Needs the ``worker`` extra (``redis``); the
API never imports this package.
"""
