"""`make bench`: the playground under a launch-day rush, measured against an ideal floor.

One invocation starts one TGI simulator and one full playground stack (redis, Celery worker,
uvicorn) in front of it, drives visitors over real HTTP and WebSockets, then replays the same
visitors straight against the same simulator through an ideal in-process queue of the same size
(the *floor*). Everything runs on one machine, so the figures that matter are the ratios to the
floor, not the absolute times. See bench/README.md for the method and the latest numbers.
"""
