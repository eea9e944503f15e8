"""Object storage: S3 URIs and a tuned botocore client (``s3``), the signed fast path for the hot calls
(``fast``), atomic JSON manifests on S3 or a local folder (``manifests``)."""
