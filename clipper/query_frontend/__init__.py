"""The query frontend: HTTP predictions (port 1337) over RPC model replicas (port 7000).

Modules: ``requests`` (parsing, strict typing), ``responses`` (bytes), ``routes`` (routing table from a
config snapshot), ``processor`` (per query: cache -> queue -> objective timer -> default), ``queues``
(EDF), ``workers`` (replica dispatch, failure handling), ``batching`` (AIMD), ``cache`` (bounded LRU),
``server`` (wiring), ``__main__`` (command line).
"""
