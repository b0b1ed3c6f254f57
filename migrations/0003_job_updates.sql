-- Live progress: every change of status, progress or the cancel flag NOTIFYs
-- video_job_update with the job id (heartbeats do not), so the jobs API can stream progress
-- without polling. A trigger, so every path that writes those columns notifies.
CREATE FUNCTION video_jobs_notify_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('video_job_update', NEW.id::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER video_jobs_visible_change
    AFTER UPDATE ON video_jobs
    FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status
          OR OLD.progress_percent IS DISTINCT FROM NEW.progress_percent
          OR OLD.stage IS DISTINCT FROM NEW.stage
          OR OLD.segment_index IS DISTINCT FROM NEW.segment_index
          OR OLD.progress_message IS DISTINCT FROM NEW.progress_message
          OR OLD.cancel_requested_at IS DISTINCT FROM NEW.cancel_requested_at)
    EXECUTE FUNCTION video_jobs_notify_update();

-- The sweeper's second question: queued jobs nobody touched for a while.
CREATE INDEX video_jobs_queued_by_update ON video_jobs (updated_at) WHERE status = 'queued';
