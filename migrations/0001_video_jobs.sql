-- Video jobs and their leases. See docs/architecture.md, "The lease protocol".
CREATE TYPE video_job_status AS ENUM ('queued', 'running', 'succeeded', 'failed', 'canceled');

CREATE TABLE video_jobs (
    id                  uuid PRIMARY KEY,
    input               jsonb NOT NULL,
    status              video_job_status NOT NULL DEFAULT 'queued',
    -- User-facing progress. Written only by fenced, monotonic progress writes.
    stage               text,
    progress_percent    smallint NOT NULL DEFAULT 0 CHECK (progress_percent BETWEEN 0 AND 100),
    segment_index       integer CHECK (segment_index >= 0),
    segment_total       integer CHECK (segment_total > 0),
    progress_message    text,
    progress_updated_at timestamptz,
    -- The lease. lease_epoch is the fencing token: +1 on every acquisition or takeover.
    -- Liveness is lease_heartbeat_at/lease_expires_at alone; progress and cancel never move them.
    lease_holder        text,
    lease_epoch         bigint NOT NULL DEFAULT 0 CHECK (lease_epoch >= 0),
    lease_heartbeat_at  timestamptz,
    lease_expires_at    timestamptz,
    cancel_requested_at timestamptz,
    attempts            integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    artifact_key        text,
    error_code          text,
    error_message       text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    started_at          timestamptz,
    finished_at         timestamptz,
    updated_at          timestamptz NOT NULL DEFAULT now(),
    -- A lease exists exactly while the job runs.
    CONSTRAINT video_jobs_lease_iff_running CHECK (
        (status = 'running') = (lease_holder IS NOT NULL
                                AND lease_heartbeat_at IS NOT NULL
                                AND lease_expires_at IS NOT NULL)
    ),
    CONSTRAINT video_jobs_segment_in_range CHECK (segment_index < segment_total),
    CONSTRAINT video_jobs_finished_iff_terminal CHECK (
        (status IN ('succeeded', 'failed', 'canceled')) = (finished_at IS NOT NULL)
    )
);

-- The sweeper: running jobs by lease expiry.
CREATE INDEX video_jobs_running_by_expiry ON video_jobs (lease_expires_at) WHERE status = 'running';
-- Listing, newest first, with and without a status filter.
CREATE INDEX video_jobs_by_created ON video_jobs (created_at DESC, id DESC);
CREATE INDEX video_jobs_by_status_created ON video_jobs (status, created_at DESC, id DESC);

-- A running job's worker LISTENs on video_job_cancel and reacts within a second; the
-- heartbeat, which also reports the flag, is the fallback. A trigger, so that every path that
-- sets the flag notifies (and only the first time).
CREATE FUNCTION video_jobs_notify_cancel() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('video_job_cancel', NEW.id::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER video_jobs_cancel_requested
    AFTER UPDATE OF cancel_requested_at ON video_jobs
    FOR EACH ROW
    WHEN (OLD.cancel_requested_at IS NULL
          AND NEW.cancel_requested_at IS NOT NULL
          AND NEW.status = 'running')
    EXECUTE FUNCTION video_jobs_notify_cancel();
