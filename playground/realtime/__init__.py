"""Redis and realtime plumbing, below services: the clients, the generations' own Redis pipe,
each message's channel-layer group, the delta log and its publisher, presence, stop flags, and
the worker's shared event loop. Nothing here reads the database or knows about admission."""
