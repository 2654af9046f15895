"""The benchmark targets (our frontend, the bare handler, Ray Serve, MLServer) and their plumbing.

Each target module offers a context manager that starts the stack, waits until it answers a real
prediction, yields an ``Endpoint`` for the load generator, and stops everything it started.
"""
