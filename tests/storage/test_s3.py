"""S3 specifics: multipart, no pending uploads, presigned URLs, memory bound, errors."""

from __future__ import annotations

import io
import tracemalloc
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config

from loreg.storage import StorageUnavailable
from loreg.storage.s3 import MIN_PART_SIZE, S3BlobStore
from tests.factories.storage import MB, SMALL_PART, ChunkedSource, blob, s3_harness
from tests.fixtures.postgres import free_port
from tests.fixtures.s3 import S3Endpoint


def test_20mb_round_trip_uses_several_parts(s3_bucket: S3Endpoint) -> None:
    harness = s3_harness(s3_bucket)
    store = harness.store
    digest, data = blob(20 * MB, seed=5)
    assert store.put(digest, ChunkedSource(data, read_size=1 << 20)) == 20 * MB
    head = s3_bucket.client().head_object(
        Bucket=s3_bucket.bucket, Key=f"blobs/sha256/{digest[7:9]}/{digest[7:]}"
    )
    # A multipart object's ETag ends in -<number of parts>.
    parts = int(head["ETag"].strip('"').rsplit("-", 1)[1])
    assert parts == -(-20 * MB // SMALL_PART) and parts > 1
    assert store.read_range(digest, 0, 20 * MB) == data
    assert store.read_range(digest, SMALL_PART - 5, 10) == data[SMALL_PART - 5 : SMALL_PART + 5]


@pytest.mark.parametrize("fail", ["mismatch", "source", "too_large"])
def test_failed_multipart_leaves_no_pending_upload(s3_bucket: S3Endpoint, fail: str) -> None:
    harness = s3_harness(s3_bucket)
    store = harness.store
    digest, data = blob(12 * MB)
    raw = s3_bucket.client()
    with pytest.raises(Exception) as err:
        if fail == "mismatch":
            store.put(blob(1, seed=9)[0], io.BytesIO(data))
        elif fail == "source":
            store.put(digest, ChunkedSource(data, fail_after=11 * MB))
        else:
            store.put(digest, io.BytesIO(data), max_size=11 * MB)
    assert err.type.__name__ in {"DigestMismatch", "ConnectionResetError", "BlobTooLarge"}
    assert raw.list_multipart_uploads(Bucket=s3_bucket.bucket).get("Uploads", []) == []
    assert raw.list_objects_v2(Bucket=s3_bucket.bucket).get("Contents", []) == []
    assert isinstance(store, S3BlobStore) and store.pending_uploads() == []


def test_uploads_of_unknown_state_are_never_taken_for_leftovers(s3_bucket: S3Endpoint) -> None:
    """S3 cannot tell a live multipart upload from an abandoned one: without a cutoff (the
    API's start-up sweep) none is listed, so another process's upload in flight survives."""
    harness = s3_harness(s3_bucket)
    harness.interrupt_upload(0.0)
    assert harness.store.leftover_uploads() == []
    assert [
        u["Key"]
        for u in s3_bucket.client()
        .list_multipart_uploads(Bucket=s3_bucket.bucket)
        .get("Uploads", [])
    ] != []


def test_presigned_url_fetches_the_bytes(s3_bucket: S3Endpoint) -> None:
    store = s3_harness(s3_bucket).store
    digest, data = blob(100_000, seed=11)
    store.put(digest, io.BytesIO(data))
    url = store.presigned_url(digest, expires_in=300)
    assert url is not None
    response = httpx.get(url)
    assert response.status_code == 200
    assert response.content == data
    ranged = httpx.get(url, headers={"Range": "bytes=10-19"})
    assert ranged.status_code == 206 and ranged.content == data[10:20]
    # Path-style: the bucket is in the path, so any endpoint (MinIO, moto) resolves it.
    assert url.startswith(f"{s3_bucket.endpoint_url}/{s3_bucket.bucket}/blobs/sha256/")


def test_memory_bounded_during_64mb_put(s3_bucket: S3Endpoint) -> None:
    store = s3_harness(s3_bucket).store
    assert isinstance(store, S3BlobStore) and store.upload_concurrency > 1
    size = 64 * MB
    digest, data = blob(size, seed=13)
    source = ChunkedSource(data, read_size=1 << 20)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        store.put(digest, source)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # The part buffers (one being filled, the others being sent), up to one part's worth
    # more in the HTTP stack while parts are sent, and small change; never the blob.
    assert peak < (store.upload_concurrency + 1) * SMALL_PART + 5 * MB, peak
    assert peak < size / 2


@pytest.mark.parametrize("concurrency", [1, 3])
def test_concurrency_setting_round_trips(s3_bucket: S3Endpoint, concurrency: int) -> None:
    store = S3BlobStore(
        s3_bucket.bucket,
        "c",
        endpoint_url=s3_bucket.endpoint_url,
        region="us-east-1",
        part_size=SMALL_PART,
        upload_concurrency=concurrency,
    )
    size = 3 * SMALL_PART  # a multiple of the part size: the last fill reads nothing
    digest, data = blob(size, seed=17)
    assert store.put(digest, ChunkedSource(data, read_size=777_777)) == size
    assert store.read_range(digest, 0, size) == data
    assert store.pending_uploads() == []


def test_failed_part_aborts_after_the_parts_in_flight(s3_bucket: S3Endpoint) -> None:
    """A part that fails (others still in flight) aborts the upload; nothing is left."""
    harness = s3_harness(s3_bucket)
    store = harness.store
    assert isinstance(store, S3BlobStore)
    digest, data = blob(6 * SMALL_PART, seed=19)

    class Injected(RuntimeError):
        pass

    def fail_third_part(request: Any, **_: Any) -> None:
        if "partNumber=3" in request.url:
            raise Injected("part 3 lost")

    store.client.meta.events.register("before-send.s3.UploadPart", fail_third_part)
    try:
        with pytest.raises(Injected):
            store.put(digest, io.BytesIO(data))
    finally:
        store.client.meta.events.unregister("before-send.s3.UploadPart", fail_third_part)
    assert harness.leftovers() == []
    assert not store.exists(digest)
    assert store.put(digest, io.BytesIO(data)) == len(data)  # and it works next time


def test_upload_concurrency_below_one_refused() -> None:
    with pytest.raises(ValueError):
        S3BlobStore("b", upload_concurrency=0, client=boto3.client("s3"))


def test_prefix_layout_and_stray_keys(s3_bucket: S3Endpoint) -> None:
    raw = s3_bucket.client()
    store = S3BlobStore(
        s3_bucket.bucket, "/team/blobs/", endpoint_url=s3_bucket.endpoint_url, region="us-east-1"
    )
    digest, data = blob(10)
    store.put(digest, io.BytesIO(data))
    hex_ = digest[7:]
    for stray in ("team/blobs/README", "team/blobs/sha256/zz/" + hex_, "other/sha256/x"):
        raw.put_object(Bucket=s3_bucket.bucket, Key=stray, Body=b"x")
    keys = {o["Key"] for o in raw.list_objects_v2(Bucket=s3_bucket.bucket)["Contents"]}
    assert f"team/blobs/sha256/{hex_[:2]}/{hex_}" in keys
    assert [d for d, _, _ in store.iterate()] == [digest]


def test_iterate_pages(s3_bucket: S3Endpoint) -> None:
    raw = s3_bucket.client()
    store = S3BlobStore(s3_bucket.bucket, "", endpoint_url=s3_bucket.endpoint_url)
    digests = set()
    for n in range(1005):  # more than one list page (1000 keys)
        digest = blob(1, seed=n)[0] if n < 256 else f"sha256:{n:064x}"
        digests.add(digest)
        raw.put_object(Bucket=s3_bucket.bucket, Key=f"sha256/{digest[7:9]}/{digest[7:]}", Body=b"x")
    assert {d for d, _, _ in store.iterate()} == digests


def test_part_size_below_s3_minimum_refused() -> None:
    with pytest.raises(ValueError):
        S3BlobStore("b", part_size=MIN_PART_SIZE - 1, client=boto3.client("s3"))


def test_unreachable_endpoint_is_unavailable() -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=1),
    )
    store = S3BlobStore("bucket", "p", client=client)
    digest, data = blob(10)
    for call in (
        store.check,
        lambda: store.exists(digest),
        lambda: store.put(digest, io.BytesIO(data)),
        lambda: list(store.iterate()),
        lambda: store.open(digest).close(),
    ):
        with pytest.raises(StorageUnavailable) as err:
            call()
        assert err.value.code == "storage_unavailable"


def test_missing_bucket_is_unavailable(s3_server: str) -> None:
    store = S3BlobStore("no-such-bucket-here", "p", endpoint_url=s3_server, region="us-east-1")
    with pytest.raises(StorageUnavailable):
        store.check()
    digest, data = blob(10)
    with pytest.raises(StorageUnavailable):
        store.put(digest, io.BytesIO(data))
