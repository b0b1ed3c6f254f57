-- Which delivery of a job the queue should hold a task for. The task's name is derived from
-- (job id, generation), so it is deterministic: the sweeper asks the queue whether the task
-- of the row's generation still exists, and only when it is gone does it advance the
-- generation (compare-and-set on this column) and enqueue a task under the new name. Cloud
-- Tasks refuses a recently used name, which is why a re-enqueue needs a new generation.
ALTER TABLE video_jobs
    ADD COLUMN delivery_generation integer NOT NULL DEFAULT 0
    CONSTRAINT video_jobs_delivery_generation_not_negative CHECK (delivery_generation >= 0);
