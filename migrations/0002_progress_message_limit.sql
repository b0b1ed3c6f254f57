-- Progress messages are for a progress bar: the domain caps them at 500 bytes, and so does
-- the table, so a row always reads back.
ALTER TABLE video_jobs
    ADD CONSTRAINT video_jobs_progress_message_length
    CHECK (octet_length(progress_message) <= 500);
