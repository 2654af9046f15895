"""The reconciler's marks on what it creates (model labels ``key=value``; no ',' or ':' allowed)."""

from __future__ import annotations

MANAGED_BY = "clipper.ai/managed-by"
CONTENT_HASH = "clipper.ai/content-hash"
GIT_COMMIT = "clipper.ai/git-commit"


def label_value(labels: tuple[str, ...] | list[str], key: str) -> str | None:
    prefix = key + "="
    for label in labels:
        if label.startswith(prefix):
            return label[len(prefix) :]
    return None


def model_labels(owner: str, content_hash: str, git_commit: str | None, user: tuple[str, ...]) -> list[str]:
    out = [f"{MANAGED_BY}={owner}", f"{CONTENT_HASH}={content_hash}"]
    if git_commit:
        out.append(f"{GIT_COMMIT}={git_commit}")
    return out + list(user)
