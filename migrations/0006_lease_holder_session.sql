-- The lease holder's liveness handle: the database session of the worker's long-lived
-- (LISTEN) connection, as pid and backend_start together — a pid is reused once its session
-- ends, the pair is not. When pg_stat_activity no longer has that session, the worker's
-- process is gone (the kernel closed its sockets and the server ended the backend), so
-- acquire may take the job over before the lease expires, and the sweeper requeues it at its
-- next pass. Safety never rests on this: a takeover bumps lease_epoch, which fences every
-- write the old holder might still make. A lease without a session (both NULL) ends by
-- expiry alone. See docs/architecture.md, "Liveness: a dead holder's session".
ALTER TABLE video_jobs
    ADD COLUMN lease_holder_pid integer,
    ADD COLUMN lease_holder_backend_start timestamptz,
    ADD CONSTRAINT video_jobs_session_whole CHECK (
        (lease_holder_pid IS NULL) = (lease_holder_backend_start IS NULL)
    ),
    ADD CONSTRAINT video_jobs_session_only_on_a_lease CHECK (
        lease_holder_pid IS NULL OR lease_holder IS NOT NULL
    );
