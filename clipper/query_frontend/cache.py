"""Bounded prediction cache (the original's, with its defects fixed).

* Keys compare exactly: ``(model name, model version, input bytes)``; no hash aliasing.
* Only completed outputs are stored. There are no pending entries, so nothing can leak when a query
  times out (the original kept pending entries forever); identical concurrent misses each queue a
  task, as in the original, and the first output to arrive fills the entry.
* Capacity is in bytes of memory: each entry costs its input key, its output *and* the interpreter's
  per-entry overhead (key tuple, bytes headers, ordered-dict node: ~240 bytes, measured). The
  original counted only output bytes, so many small entries grew without bound -- and so
  did an earlier version of this cache, by ~7x its capacity under a soak of distinct inputs. An
  entry larger than the capacity is not stored; capacity 0 disables the cache.
* Eviction is LRU (``OrderedDict``: O(1) hit, insert and evict).
"""

from __future__ import annotations

from collections import OrderedDict

CacheKey = tuple[str, str, bytes]

_ENTRY_OVERHEAD = 240  # bytes of Python objects per entry beyond the key and output payloads


class PredictionCache:
    __slots__ = ("capacity", "size", "_entries")

    def __init__(self, capacity_bytes: int) -> None:
        if capacity_bytes < 0:
            raise ValueError("prediction cache size must be >= 0")
        self.capacity = capacity_bytes
        self.size = 0
        self._entries: OrderedDict[CacheKey, bytes] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: CacheKey) -> bool:
        return key in self._entries

    def get(self, key: CacheKey) -> bytes | None:
        """The cached output (and mark it most recently used), or None."""
        entries = self._entries
        value = entries.get(key)
        if value is not None:
            entries.move_to_end(key)
        return value

    def put(self, key: CacheKey, value: bytes) -> bool:
        """Store an output; the first output for a key wins. False if not stored."""
        entries = self._entries
        if key in entries:
            return False
        cost = len(key[2]) + len(value) + _ENTRY_OVERHEAD
        if cost > self.capacity:
            return False
        self.size += cost
        entries[key] = value
        while self.size > self.capacity:
            k, v = entries.popitem(last=False)
            self.size -= len(k[2]) + len(v) + _ENTRY_OVERHEAD
        return True

    def drop_model(self, name: str, version: str) -> int:
        """Forget every entry of a purged model version."""
        doomed = [k for k in self._entries if k[0] == name and k[1] == version]
        for k in doomed:
            v = self._entries.pop(k)
            self.size -= len(k[2]) + len(v) + _ENTRY_OVERHEAD
        return len(doomed)
