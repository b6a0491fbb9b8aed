"""LOREG_S3_PUBLIC_ENDPOINT_URL: presigned URLs signed for the public endpoint still work."""

from __future__ import annotations

import io
from pathlib import Path

import httpx

from loreg.config import Settings
from loreg.storage import open_store
from loreg.storage.s3 import S3BlobStore
from tests.factories.storage import blob
from tests.fixtures.s3 import S3Endpoint


def test_presigned_url_names_the_public_endpoint(s3_bucket: S3Endpoint, tmp_path: Path) -> None:
    # the same moto server under another host name: what a compose user's host sees
    public = s3_bucket.endpoint_url.replace("127.0.0.1", "localhost")
    settings = Settings(
        home=tmp_path,
        storage_url=f"s3://{s3_bucket.bucket}/blobs",
        s3_endpoint_url=s3_bucket.endpoint_url,
        s3_region="us-east-1",
        s3_public_endpoint_url=public,
    )
    store = open_store(settings)
    assert isinstance(store, S3BlobStore)
    assert store.signer.meta.endpoint_url == public
    assert store.client.meta.endpoint_url == s3_bucket.endpoint_url
    digest, data = blob(10_000, seed=3)
    store.put(digest, io.BytesIO(data))  # through the internal endpoint
    url = store.presigned_url(digest, expires_in=300)
    assert url is not None and url.startswith(f"{public}/{s3_bucket.bucket}/blobs/sha256/")
    assert httpx.get(url).content == data


def test_without_public_endpoint_a_plain_store(s3_bucket: S3Endpoint, tmp_path: Path) -> None:
    settings = Settings(
        home=tmp_path,
        storage_url=f"s3://{s3_bucket.bucket}",
        s3_endpoint_url=s3_bucket.endpoint_url,
        s3_region="us-east-1",
    )
    store = open_store(settings)
    assert type(store) is S3BlobStore
    assert store.signer is store.client
