"""Finding a source run's artifact files: a local directory, a ``file:`` URI, or any URL
fsspec reaches (``s3://``, ``gs://`` … when their package and credentials are there)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlparse

from tracker.errors import InvalidArtifactPath, NotFoundError


@dataclass
class ArtifactPlan:
    """The files of one run, as paths relative to its artifact root."""

    root: str | None = None  # where they were found; None: nowhere
    files: list[str] = field(default_factory=list)
    skipped: str | None = None  # why the root could not be read
    bad_paths: list[tuple[str, str]] = field(default_factory=list)  # (path, why), left out
    fs: Any = field(default=None, repr=False)  # an fsspec filesystem for remote roots

    def fetch(self, rel: str, tmp_dir: str) -> str:
        """A local file holding ``rel``: the file itself when local, else a download into
        ``tmp_dir`` under its own name (the store keeps the basename)."""
        assert self.root is not None
        if self.fs is None:
            return os.path.join(self.root, *rel.split("/"))
        local = os.path.join(tmp_dir, *rel.split("/"))
        os.makedirs(os.path.dirname(local), exist_ok=True)
        self.fs.get_file(f"{self.root.rstrip('/')}/{rel}", local)
        return local


def local_path(uri: str) -> str | None:
    """The local path a URI names (a plain path or ``file:``), or None for anything remote."""
    if uri.startswith("file:"):
        parsed = urlparse(uri)
        if parsed.netloc not in ("", "localhost"):
            return None
        return unquote(parsed.path)
    if "://" in uri or uri.startswith("mlflow-artifacts:"):
        return None
    return uri


def locate(candidates: Sequence[str]) -> ArtifactPlan:
    """The first candidate root that exists, with its files.

    A local root that does not exist means "no artifacts" (MLflow creates the directory only
    when something is logged); a remote root that cannot be listed is reported as skipped,
    unless a later candidate has the files."""
    from tracker.artifacts import validate_path

    reasons = []
    for uri in dict.fromkeys(c for c in candidates if c):
        local = local_path(uri)
        if local is not None:
            if not os.path.isdir(local):
                continue
            plan = ArtifactPlan(root=local)
            names = [
                os.path.relpath(os.path.join(d, f), local).replace(os.sep, "/")
                for d, _, files in os.walk(local)
                for f in files
            ]
        else:
            try:
                plan, names = _remote(uri)
            except Exception as e:  # missing package, credentials, network: report, go on
                reasons.append(f"{uri}: {type(e).__name__}: {e}")
                continue
        if not names and reasons:
            break  # an empty fallback folder says nothing about the unreachable files
        for name in sorted(names):
            try:
                if validate_path(name) != name:
                    raise InvalidArtifactPath(f"artifact path {name!r} is not normalised")
                plan.files.append(name)
            except InvalidArtifactPath as e:
                plan.bad_paths.append((name, str(e)))
        return plan
    return ArtifactPlan(skipped="; ".join(reasons) if reasons else None)


def _remote(uri: str) -> tuple[ArtifactPlan, list[str]]:
    if uri.startswith("mlflow-artifacts:"):
        raise NotFoundError(
            "served by an MLflow tracking server (proxied artifacts): copy the server's "
            "--artifacts-destination, or download with `mlflow artifacts download`"
        )
    import fsspec.core

    fs, root = fsspec.core.url_to_fs(uri)
    root = root.rstrip("/")
    names = [p[len(root) :].lstrip("/") for p in fs.find(root)]
    return ArtifactPlan(root=root, fs=fs), [n for n in names if n]
