"""``open_store``: storage URLs from settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from loreg.config import Settings
from loreg.errors import InvalidInput
from loreg.storage import BlobStore, open_store, open_store_url
from loreg.storage.local import LocalBlobStore
from loreg.storage.s3 import S3BlobStore
from tests.fixtures.s3 import S3Endpoint


def test_default_is_a_folder_under_home(tmp_path: Path) -> None:
    store = open_store(Settings(home=tmp_path, storage_url=None))
    assert isinstance(store, LocalBlobStore)
    assert store.root == tmp_path / "blobs"
    assert isinstance(store, BlobStore)


def test_file_url(tmp_path: Path) -> None:
    store = open_store(Settings(home=tmp_path, storage_url=f"file://{tmp_path}/my%20blobs"))
    assert isinstance(store, LocalBlobStore)
    assert store.root == tmp_path / "my blobs"
    store = open_store_url(f"file://localhost{tmp_path}/x")
    assert isinstance(store, LocalBlobStore) and store.root == tmp_path / "x"


def test_s3_url(tmp_path: Path, s3_bucket: S3Endpoint) -> None:
    settings = Settings(
        home=tmp_path,
        storage_url=f"s3://{s3_bucket.bucket}/team/blobs/",
        s3_endpoint_url=s3_bucket.endpoint_url,
        s3_region="us-east-1",
    )
    store = open_store(settings)
    assert isinstance(store, S3BlobStore)
    assert (store.bucket, store.prefix) == (s3_bucket.bucket, "team/blobs")
    assert store.client.meta.endpoint_url == s3_bucket.endpoint_url
    assert store.client.meta.region_name == "us-east-1"
    store.check()
    bare = open_store_url(f"s3://{s3_bucket.bucket}", s3_endpoint_url=s3_bucket.endpoint_url)
    assert isinstance(bare, S3BlobStore) and bare.prefix == ""


@pytest.mark.parametrize(
    "url", ["http://x/y", "s3:///prefix", "file://otherhost/x", "file://", "/plain/path", ""]
)
def test_bad_urls(url: str) -> None:
    with pytest.raises(InvalidInput):
        open_store_url(url)
