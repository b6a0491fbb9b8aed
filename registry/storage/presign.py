"""An S3 store whose presigned URLs name another endpoint than the one it talks to.

In docker compose the API reaches MinIO as ``http://minio:9000`` while a client on the host
only knows ``http://localhost:9000``; a URL signed for the first is useless to the second,
and rewriting its host breaks the signature. So presigned URLs are signed by a second client
configured with the public endpoint (``LOREG_S3_PUBLIC_ENDPOINT_URL``); every other request
goes to the internal one. Signing is local: the public endpoint need not be reachable from
the server.
"""

from __future__ import annotations

from registry.storage.s3 import S3BlobStore


class PublicPresignS3BlobStore(S3BlobStore):
    """``S3BlobStore`` with presigned URLs on ``public_endpoint_url``."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        public_endpoint_url: str,
        endpoint_url: str | None = None,
        region: str | None = None,
    ) -> None:
        super().__init__(bucket, prefix, endpoint_url=endpoint_url, region=region)
        self.signer = S3BlobStore(bucket, prefix, endpoint_url=public_endpoint_url,
                                  region=region)

    def __repr__(self) -> str:
        return (f"PublicPresignS3BlobStore(bucket={self.bucket!r}, prefix={self.prefix!r}, "
                f"public={self.signer.client.meta.endpoint_url!r})")

    def presigned_url(self, digest: str, *, expires_in: int) -> str | None:
        return self.signer.presigned_url(digest, expires_in=expires_in)
