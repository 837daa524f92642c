"""The archive in S3: objects written once and verified, media uploads, media structure checks."""
