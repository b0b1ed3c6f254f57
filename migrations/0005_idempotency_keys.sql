-- Idempotent creates: POST /v1/jobs with an Idempotency-Key header. A key belongs to the
-- caller that sent it (scope: a SHA-256 digest of its API key, never the key itself) and to
-- the request it was first used with (fingerprint: a SHA-256 digest of the canonical request).
-- The primary key is what makes concurrent creates with one key make one job: the create is
-- one INSERT ... ON CONFLICT on it (repo-pg sql::CREATE_IDEMPOTENT).
-- Retention: a key is answered for as long as the API's retention (24 h); after that it counts
-- as absent, and every create under a key purges a few expired rows (oldest first), so the
-- table stays bounded with no process of its own — nothing runs on Cloud Run at zero scale.
CREATE TABLE video_job_idempotency_keys (
    scope       bytea NOT NULL CHECK (octet_length(scope) = 32),
    idem_key    text NOT NULL CHECK (octet_length(idem_key) BETWEEN 1 AND 255),
    fingerprint bytea NOT NULL CHECK (octet_length(fingerprint) = 32),
    job_id      uuid NOT NULL REFERENCES video_jobs (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, idem_key)
);

-- The purge takes the oldest rows first.
CREATE INDEX video_job_idempotency_keys_by_created ON video_job_idempotency_keys (created_at);
