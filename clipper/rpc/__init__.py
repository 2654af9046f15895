"""RPC between the query frontend and model containers (Clipper RPC protocol version 3).

``protocol``: frames, encode/decode, error outputs. ``server``: the frontend's ROUTER (``RpcServer``).
``zmqio``: fast non-blocking multipart I/O shared by both sides.
"""
