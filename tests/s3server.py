"""A real S3-protocol server (moto's server mode) for tests, as a pytest plugin module.

Load it with ``pytest_plugins = ["tests.s3server"]`` in ``tests/conftest.py`` or in a test
module; pytest registers the module once however many places list it, so one server serves the
whole session (one per xdist worker).

Fixtures:

``s3_server`` (session)
    Starts ``ThreadedMotoServer`` on 127.0.0.1 with a free port and creates a bucket; yields an
    :class:`S3Server`. If the server cannot start the tests skip, unless the ``CI`` environment
    variable is set, in which case they fail: CI must never silently skip the S3 tests.
``s3`` (function)
    The same server, with s3fs's instance cache cleared before and after the test and the
    bucket re-created if something wiped moto's state.

Credentials and endpoint travel only in :attr:`S3Server.storage_options` (s3fs's ``key``,
``secret`` and ``client_kwargs``); nothing is written to ``os.environ`` (``AWS_ENDPOINT_URL``
and friends), so no other test or boto client gets pointed at moto by accident.

Caveat: the server runs in-process and shares moto's global state with ``moto.mock_aws``; a
test using ``mock_aws`` resets that state (the ``s3`` fixture re-creates the bucket).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

BUCKET = "tracker-test"
REGION = "us-east-1"
_START_TIMEOUT = 30.0


@dataclass(frozen=True)
class S3Server:
    """A running moto S3 server and how to reach it."""

    endpoint_url: str
    bucket: str
    storage_options: dict[str, Any]
    _client: Any = field(repr=False, compare=False)

    def url(self, *parts: str) -> str:
        """``s3://<bucket>/<parts joined by '/'>``."""
        return "/".join([f"s3://{self.bucket}", *parts])

    def ensure_bucket(self) -> None:
        """Create the bucket unless it exists (``mock_aws`` elsewhere may have reset moto)."""
        from botocore.exceptions import ClientError

        try:
            self._client.head_bucket(Bucket=self.bucket)
        except ClientError:
            self._client.create_bucket(Bucket=self.bucket)


def _start() -> tuple[Any, str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    # start() waits forever if its thread dies before binding, so wait on it with a timeout.
    starter = threading.Thread(target=server.start, daemon=True)
    starter.start()
    starter.join(_START_TIMEOUT)
    if starter.is_alive():
        raise RuntimeError(f"moto server did not start within {_START_TIMEOUT:.0f} s")
    host, port = server.get_host_and_port()
    return server, f"http://{host}:{port}"


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto's S3 server with an empty bucket, for the whole session."""
    server = None
    try:
        import boto3

        server, endpoint = _start()
        options = {
            "key": "testing",
            "secret": "testing",
            "client_kwargs": {"endpoint_url": endpoint, "region_name": REGION},
        }
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        info = S3Server(endpoint, BUCKET, options, client)
        info.ensure_bucket()
    except Exception as e:
        if server is not None:
            server.stop()
        reason = f"moto S3 server unavailable: {type(e).__name__}: {e}"
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI is set, so this fails instead of skipping)", pytrace=False)
        pytest.skip(reason)
    try:
        yield info
    finally:
        server.stop()


@pytest.fixture
def s3(s3_server: S3Server) -> Iterator[S3Server]:
    """The session's S3 server with fresh s3fs instances around the test."""
    import s3fs

    # Cached S3FileSystem instances keep listings (dircache) from earlier tests.
    s3fs.S3FileSystem.clear_instance_cache()
    s3_server.ensure_bucket()
    yield s3_server
    s3fs.S3FileSystem.clear_instance_cache()
