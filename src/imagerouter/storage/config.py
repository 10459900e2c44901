"""``[server.storage]``: where finished images are kept and how their URLs are signed.

::

    [server.storage]
    backend = "s3"                 # "local" (default), "s3", or "none" (keep provider URLs)
    bucket = "images"
    prefix = "imagerouter/"
    endpoint_url = "http://127.0.0.1:8333"   # any S3-compatible store (R2, SeaweedFS, MinIO)
    region = "us-east-1"
    access_key_id = "..."          # or IMAGEROUTER_SERVER_STORAGE__ACCESS_KEY_ID
    secret_access_key = "..."      # or IMAGEROUTER_SERVER_STORAGE__SECRET_ACCESS_KEY

The credentials are ``SecretStr``: they print as ``**********`` and are never logged or
returned by the API. Without them boto3's usual chain (environment, profile, instance role)
applies.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

__all__ = ["MAX_URL_TTL_S", "StorageSettings"]

#: The longest a SigV4 presigned URL may live (7 days); local URLs use the same bound.
MAX_URL_TTL_S = 7 * 24 * 3600


class StorageSettings(BaseModel):
    """Output storage: the backend, its location and credentials, and URL lifetimes."""

    model_config = ConfigDict(extra="forbid")

    backend: Literal["local", "s3", "none"] = Field(
        default="local",
        description="local: files under the data dir, served signed; s3: any S3-compatible "
        "store with presigned URLs; none: keep the provider's own URLs and base64.",
    )
    directory: Path | None = Field(
        default=None, description="local: where files go; default <data_dir>/media."
    )
    bucket: str | None = None
    prefix: str = Field(default="", description="s3: prepended to every key.")
    endpoint_url: str | None = Field(default=None, description="s3: for non-AWS stores.")
    region: str | None = None
    access_key_id: SecretStr | None = None
    secret_access_key: SecretStr | None = None
    addressing_style: Literal["auto", "path", "virtual"] = "auto"
    url_ttl_s: float = Field(
        default=MAX_URL_TTL_S,
        gt=0,
        le=MAX_URL_TTL_S,
        description="How long a signed image URL stays valid.",
    )
    keep_inline: bool = Field(
        default=False,
        description="Also keep a provider's inline base64 in the job result beside the stored "
        "URL. Off by default: an image is then about 2 MB more in every job row, WAL frame and "
        "checkpoint, and the OpenAI-compatible endpoint reads a stored image's bytes from the "
        "storage backend anyway (on local disk no download).",
    )
    max_download_bytes: int = Field(default=50 * 1024 * 1024, ge=1024)
    download_timeout_s: float = Field(default=30.0, gt=0)
    max_video_bytes: int = Field(
        default=1024 * 1024 * 1024, ge=1024, description="Largest video kept (streamed to storage)."
    )
    video_download_timeout_s: float = Field(default=600.0, gt=0)
    threads: int = Field(default=8, ge=1, le=64, description="Bounded pool for blocking I/O.")

    @model_validator(mode="after")
    def _s3_needs_bucket(self) -> StorageSettings:
        if self.backend == "s3" and not self.bucket:
            raise ValueError("storage.bucket is required when storage.backend is 's3'")
        return self
