//! The statements of the lease protocol, one per operation.
//!
//! Every worker write carries the fence `id = $1 AND lease_epoch = $2 AND lease_holder = $3
//! AND status = 'running'`; time is always the database's `now()`. Each statement mirrors one
//! transition of `domain::transition` — keep them in step (the conformance suite checks).
//! They are public so the benchmark can hand the very same text to `pgbench`.

/// The columns of a job, as `row::JobRow` reads them.
macro_rules! job_columns {
    () => {
        "id, input, status::text AS status, stage, progress_percent, segment_index, \
         segment_total, progress_message, progress_updated_at, lease_holder, lease_epoch, \
         lease_heartbeat_at, lease_expires_at, lease_holder_pid, lease_holder_backend_start, \
         cancel_requested_at, attempts, artifact_key, error_code, error_message, created_at, \
         started_at, finished_at, updated_at, delivery_generation"
    };
}

/// Whether the lease holder of the `video_jobs` row in scope is known gone: it recorded a
/// session and `pg_stat_activity` has no backend with that pid and that `backend_start`.
///
/// A backend whose `backend_start` reads NULL counts as *alive*: that is how a role without
/// `pg_read_all_stats` sees another role's sessions, and a session we cannot see the start
/// of must never be taken for dead — the TTL then applies, as without a session. A pid with
/// a different `backend_start` is a reused pid: the holder's session is gone.
///
/// Two more conditions keep the rule to what this server can know:
/// - the session started after this server did (`pg_postmaster_start_time()`): after a
///   restart no session of before is listed, yet their workers live and reconnect — the
///   TTL decides for them, as it would without sessions;
/// - the session started before this statement: `pg_stat_activity` is read once per
///   transaction, so a row re-read after a concurrent re-registration may name a session
///   newer than that read.
macro_rules! holder_gone {
    () => {
        "(video_jobs.lease_holder_pid IS NOT NULL
          AND video_jobs.lease_holder_backend_start >= pg_postmaster_start_time()
          AND video_jobs.lease_holder_backend_start < statement_timestamp()
          AND NOT EXISTS (
            SELECT 1 FROM pg_stat_activity a
            WHERE a.pid = video_jobs.lease_holder_pid
              AND (a.backend_start IS NULL
                   OR a.backend_start = video_jobs.lease_holder_backend_start)))"
    };
}

/// [`holder_gone!`] as text, for tests that evaluate it on their own.
pub const HOLDER_GONE: &str = holder_gone!();

/// `$1` id, `$2` input.
pub const CREATE: &str = concat!(
    "INSERT INTO video_jobs (id, input) VALUES ($1, $2) RETURNING ",
    job_columns!()
);

/// `$1` id.
pub const GET: &str = concat!("SELECT ", job_columns!(), " FROM video_jobs WHERE id = $1");

/// `$1` status or NULL, `$2`/`$3` cursor (created_at, id) or NULL, `$4` limit.
pub const LIST: &str = concat!(
    "SELECT ",
    job_columns!(),
    " FROM video_jobs
     WHERE ($1::text IS NULL OR status = $1::video_job_status)
       AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3))
     ORDER BY created_at DESC, id DESC
     LIMIT $4"
);

/// `$1` id, `$2` holder, `$3` max attempts, `$4` TTL in seconds, `$5`/`$6` the asker's
/// session (pid, backend_start) or NULL.
///
/// Locks the row, decides a verdict exactly as `Job::acquire` does, and applies it. A
/// concurrent acquirer waits on the row lock and then decides on the row the winner wrote,
/// so exactly one of them gets `acquired`. A live lease is one that has not expired and
/// whose holder is not gone ([`holder_gone!`]): the database's own view of its sessions,
/// read in this statement on the locked row.
pub const ACQUIRE: &str = concat!(
    "WITH cur AS (
        SELECT id AS cur_id, status AS cur_status, lease_holder AS cur_holder,
               lease_expires_at AS cur_expires_at, attempts AS cur_attempts,
               CASE
                   WHEN status IN ('succeeded', 'failed', 'canceled') THEN 'terminal'
                   WHEN status = 'running' AND lease_expires_at > now()
                        AND NOT ",
    holder_gone!(),
    " THEN 'busy'
                   WHEN cancel_requested_at IS NOT NULL THEN 'canceled'
                   WHEN attempts >= $3 THEN 'exhausted'
                   ELSE 'acquired'
               END AS verdict
        FROM video_jobs WHERE id = $1 FOR UPDATE
    ), upd AS (
        UPDATE video_jobs j SET
            status = (CASE c.verdict WHEN 'acquired' THEN 'running'
                                     WHEN 'canceled' THEN 'canceled'
                                     ELSE 'failed' END)::video_job_status,
            lease_epoch = j.lease_epoch + (c.verdict = 'acquired')::int,
            attempts = j.attempts + (c.verdict = 'acquired')::int,
            lease_holder = CASE WHEN c.verdict = 'acquired' THEN $2 END,
            lease_heartbeat_at = CASE WHEN c.verdict = 'acquired' THEN now() END,
            lease_expires_at = CASE WHEN c.verdict = 'acquired'
                                    THEN now() + make_interval(secs => $4) END,
            lease_holder_pid = CASE WHEN c.verdict = 'acquired' THEN $5::int END,
            lease_holder_backend_start = CASE WHEN c.verdict = 'acquired'
                                              THEN $6::timestamptz END,
            started_at = CASE WHEN c.verdict = 'acquired'
                              THEN coalesce(j.started_at, now()) ELSE j.started_at END,
            finished_at = CASE WHEN c.verdict = 'acquired' THEN j.finished_at ELSE now() END,
            error_code = CASE WHEN c.verdict = 'exhausted'
                              THEN 'attempts_exhausted' ELSE j.error_code END,
            error_message = CASE WHEN c.verdict = 'exhausted'
                                 THEN format('acquired %s times, the limit is %s', j.attempts, $3)
                                 ELSE j.error_message END,
            updated_at = now()
        FROM cur c
        WHERE j.id = c.cur_id AND c.verdict IN ('acquired', 'canceled', 'exhausted')
        RETURNING ",
    job_columns!(),
    "
    )
    SELECT c.verdict, c.cur_holder AS busy_holder,
           greatest(1, ceil(extract(epoch FROM c.cur_expires_at - now())))::bigint AS retry_after_s,
           c.cur_status::text AS cur_status, upd.*
    FROM cur c LEFT JOIN upd ON true"
);

/// `$1` id, `$2` epoch, `$3` holder, `$4` TTL in seconds.
pub const HEARTBEAT: &str = "
    UPDATE video_jobs SET
        lease_heartbeat_at = now(),
        lease_expires_at = now() + make_interval(secs => $4),
        updated_at = now()
    WHERE id = $1 AND lease_epoch = $2 AND lease_holder = $3 AND status = 'running'
    RETURNING cancel_requested_at IS NOT NULL AS cancel_requested, lease_expires_at";

/// `$1` id, `$2` epoch, `$3` holder, `$4`/`$5` the holder's new session (pid,
/// backend_start).
///
/// Fenced like every write; the expiry stays. `updated_at` moves only if the session changed.
pub const REGISTER_SESSION: &str = "
    UPDATE video_jobs SET
        updated_at = CASE WHEN (lease_holder_pid, lease_holder_backend_start)
                               IS NOT DISTINCT FROM ($4::int, $5::timestamptz)
                          THEN updated_at ELSE now() END,
        lease_holder_pid = $4, lease_holder_backend_start = $5
    WHERE id = $1 AND lease_epoch = $2 AND lease_holder = $3 AND status = 'running'
    RETURNING 1";

/// The session of the connection that runs it: its pid and `backend_start` (a session
/// always sees its own row of `pg_stat_activity` in full).
pub const OWN_SESSION: &str = "
    SELECT pid, backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()";

/// `$1` id, `$2` epoch, `$3` holder, `$4` stage, `$5` percent, `$6` segment index,
/// `$7` segment total, `$8` message.
///
/// Applies only if fenced and not backwards (a lower percent, or the same percent at an
/// earlier stage — the stage order is [`STAGE_ORDER`]); otherwise reports what the row
/// holds so the caller can tell a lost lease from a regressing write.
///
/// The guard is decided on the *locked* row (`FOR UPDATE` in the CTE): under READ COMMITTED
/// a plain CTE reads the statement's snapshot, so two overlapping writes (60 and 50, both
/// snapshotting 40 while a third session held the row) could both pass and the later-
/// committing lower one move the bar back. Locking returns the latest committed version,
/// and the `UPDATE` then applies to that same version.
pub const REPORT_PROGRESS: &str = "
    WITH cur AS (
        SELECT id AS cur_id, status, lease_epoch, lease_holder, progress_percent,
               (progress_percent > $5
                OR (progress_percent = $5
                    AND coalesce(array_position(ARRAY['plan','tts','render','compose','publish']::text[], stage), 0)
                        > array_position(ARRAY['plan','tts','render','compose','publish']::text[], $4::text)))
               AS behind
        FROM video_jobs WHERE id = $1 FOR UPDATE
    ), upd AS (
        UPDATE video_jobs j SET
            stage = $4, progress_percent = $5, segment_index = $6, segment_total = $7,
            progress_message = $8, progress_updated_at = now(), updated_at = now()
        FROM cur c
        WHERE j.id = c.cur_id AND j.lease_epoch = $2 AND j.lease_holder = $3
          AND j.status = 'running' AND NOT c.behind
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM upd) AS applied,
           (cur.status = 'running' AND cur.lease_epoch = $2 AND cur.lease_holder = $3) AS fenced,
           cur.behind,
           cur.progress_percent
    FROM cur";

/// The stage order `REPORT_PROGRESS` compares by; must be `domain::Stage::ALL`.
pub const STAGE_ORDER: [&str; 5] = ["plan", "tts", "render", "compose", "publish"];

/// `$1` id, `$2` epoch, `$3` holder, `$4` error code or NULL, `$5` error message.
pub const RELEASE: &str = "
    UPDATE video_jobs SET
        status = (CASE WHEN cancel_requested_at IS NOT NULL THEN 'canceled'
                       ELSE 'queued' END)::video_job_status,
        lease_holder = NULL, lease_heartbeat_at = NULL, lease_expires_at = NULL,
        lease_holder_pid = NULL, lease_holder_backend_start = NULL,
        finished_at = CASE WHEN cancel_requested_at IS NOT NULL THEN now() END,
        error_code = coalesce($4, error_code),
        error_message = CASE WHEN $4::text IS NULL THEN error_message ELSE $5 END,
        updated_at = now()
    WHERE id = $1 AND lease_epoch = $2 AND lease_holder = $3 AND status = 'running'
    RETURNING status::text AS status";

/// `$1` id, `$2` epoch, `$3` holder, `$4` outcome status, `$5` artifact key,
/// `$6` error code, `$7` error message.
///
/// The terminal status, artifact or error, `finished_at` and the cleared lease in one
/// statement; a cancel request already on the row turns any outcome into `canceled`.
pub const FINALIZE: &str = "
    UPDATE video_jobs SET
        status = (CASE WHEN cancel_requested_at IS NOT NULL THEN 'canceled'
                       ELSE $4::text END)::video_job_status,
        artifact_key = CASE WHEN cancel_requested_at IS NULL AND $4::text = 'succeeded'
                            THEN $5 ELSE artifact_key END,
        error_code = CASE WHEN cancel_requested_at IS NOT NULL THEN error_code
                          WHEN $4::text = 'succeeded' THEN NULL
                          WHEN $4::text = 'failed' THEN $6
                          ELSE error_code END,
        error_message = CASE WHEN cancel_requested_at IS NOT NULL THEN error_message
                             WHEN $4::text = 'succeeded' THEN NULL
                             WHEN $4::text = 'failed' THEN $7
                             ELSE error_message END,
        progress_percent = CASE WHEN cancel_requested_at IS NULL AND $4::text = 'succeeded'
                                     AND stage IS NOT NULL
                                THEN 100 ELSE progress_percent END,
        lease_holder = NULL, lease_heartbeat_at = NULL, lease_expires_at = NULL,
        lease_holder_pid = NULL, lease_holder_backend_start = NULL,
        finished_at = now(), updated_at = now()
    WHERE id = $1 AND lease_epoch = $2 AND lease_holder = $3 AND status = 'running'
    RETURNING status::text AS status";

/// `$1` id.
///
/// Queued → canceled at once; running → the flag, set once (the trigger NOTIFYs); the lease
/// and progress columns are not touched.
pub const REQUEST_CANCEL: &str = "
    WITH cur AS (
        SELECT id AS cur_id, status AS cur_status,
               cancel_requested_at IS NOT NULL AS already
        FROM video_jobs WHERE id = $1 FOR UPDATE
    ), upd AS (
        UPDATE video_jobs j SET
            status = (CASE WHEN c.cur_status = 'queued' THEN 'canceled'
                           ELSE j.status::text END)::video_job_status,
            cancel_requested_at = now(),
            finished_at = CASE WHEN c.cur_status = 'queued' THEN now() ELSE j.finished_at END,
            updated_at = now()
        FROM cur c
        WHERE j.id = c.cur_id
          AND (c.cur_status = 'queued' OR (c.cur_status = 'running' AND NOT c.already))
        RETURNING 1
    )
    SELECT c.cur_status::text AS status, c.already, (SELECT count(*) FROM upd) AS changed
    FROM cur c";

/// `$1` seconds past expiry, `$2` max attempts, `$3` seconds a queued job may sit untouched
/// (NULL: never report queued jobs), `$4` at most this many queued jobs, longest untouched
/// first.
///
/// Running jobs whose lease expired long ago, or whose holder is gone ([`holder_gone!`]),
/// move to `queued` (`lease_expired` or `worker_gone`), `failed` (`attempts_exhausted`) or
/// `canceled`; queued jobs untouched for `$3` are reported and
/// touched; each row also says what it was before (`from_status`), which the `SELECT … FOR
/// UPDATE`s in `stuck` and `waiting` read under the row lock. A transaction-level advisory lock taken in the same statement makes it one
/// sweeper at a time: a concurrent sweep finds the lock taken and changes nothing.
pub const SWEEP: &str = concat!(
    "
    WITH sweeper AS (SELECT pg_try_advisory_xact_lock(hashtext('video_jobs_sweep')) AS leader),
    stuck AS (
        SELECT id AS found_id, status::text AS found_status,
               (lease_expires_at <= now() - make_interval(secs => $1)) AS found_expired
        FROM video_jobs
        WHERE (SELECT leader FROM sweeper)
          AND status = 'running'
          AND (lease_expires_at <= now() - make_interval(secs => $1) OR ",
    holder_gone!(),
    ")
        FOR UPDATE
    ),
    waiting AS (
        SELECT id AS found_id, status::text AS found_status, false AS found_expired
        FROM video_jobs
        WHERE (SELECT leader FROM sweeper)
          AND $3::float8 IS NOT NULL AND status = 'queued'
          AND updated_at <= now() - make_interval(secs => $3)
        ORDER BY updated_at, id
        LIMIT $4
        FOR UPDATE
    ),
    found AS (SELECT * FROM stuck UNION ALL SELECT * FROM waiting)
    UPDATE video_jobs SET
        status = (CASE WHEN status = 'queued' THEN 'queued'
                       WHEN cancel_requested_at IS NOT NULL THEN 'canceled'
                       WHEN attempts >= $2 THEN 'failed'
                       ELSE 'queued' END)::video_job_status,
        error_code = CASE WHEN status = 'queued' OR cancel_requested_at IS NOT NULL THEN error_code
                          WHEN attempts >= $2 THEN 'attempts_exhausted'
                          WHEN found_expired THEN 'lease_expired'
                          ELSE 'worker_gone' END,
        error_message = CASE WHEN status = 'queued' OR cancel_requested_at IS NOT NULL THEN error_message
                             WHEN attempts >= $2 AND found_expired
                             THEN format('lease expired after the last of %s attempts', attempts)
                             WHEN attempts >= $2
                             THEN format('the worker''s session ended in the last of %s attempts', attempts)
                             WHEN found_expired
                             THEN 'the worker stopped heartbeating; requeued by the sweeper'
                             ELSE 'the worker''s database session ended; requeued by the sweeper' END,
        finished_at = CASE WHEN status = 'running' AND (cancel_requested_at IS NOT NULL OR attempts >= $2)
                           THEN now() ELSE finished_at END,
        lease_holder = NULL, lease_heartbeat_at = NULL, lease_expires_at = NULL,
        lease_holder_pid = NULL, lease_holder_backend_start = NULL,
        updated_at = now()
    FROM found
    WHERE id = found_id
    RETURNING id, status::text AS status, found_status AS from_status"
);

/// `$1` id, `$2` the generation the caller saw.
///
/// Compare-and-set: the generation moves on only while the job is still queued at `$2`, so
/// of two sweepers that both found the task gone, exactly one gets a row back and enqueues.
pub const ADVANCE_DELIVERY_GENERATION: &str = "
    UPDATE video_jobs SET delivery_generation = delivery_generation + 1, updated_at = now()
    WHERE id = $1 AND status = 'queued' AND delivery_generation = $2
    RETURNING delivery_generation";

/// `$1` id, `$2` error code, `$3` error message: a job no worker ever started fails.
pub const FAIL_UNSTARTED: &str = "
    UPDATE video_jobs SET
        status = 'failed', error_code = $2, error_message = $3,
        finished_at = now(), updated_at = now()
    WHERE id = $1 AND status = 'queued' AND attempts = 0
    RETURNING 1";

/// The channel the update trigger notifies, with the job id as payload.
pub const UPDATE_CHANNEL: &str = "video_job_update";

/// The channel the cancel trigger notifies, with the job id as payload.
pub const CANCEL_CHANNEL: &str = "video_job_cancel";

/// How many expired idempotency keys one idempotent create purges. More than one, so the
/// purge outpaces the keys that expire; few, so a create stays cheap.
pub const IDEMPOTENCY_PURGE_BATCH: i64 = 16;

/// `$1` new job id, `$2` input, `$3` scope, `$4` key, `$5` fingerprint, `$6` retention in
/// seconds, `$7` purge batch.
///
/// One statement, so the key and the job are written together or not at all. The key's
/// `INSERT ... ON CONFLICT DO UPDATE` is the arbiter: of concurrent creates with one key, the
/// first inserts it and the others wait for its commit, then find the row (the DO UPDATE locks
/// and returns it even when it committed after this statement's snapshot). The update
/// changes the row only when the key expired: then it is taken over by this request. The job
/// is inserted only when the key ends up naming `$1` (`created`, with its columns). Otherwise
/// the caller reads the job the key names with [`GET`], a statement of its own: a job
/// committed by a concurrent create after this statement's snapshot is invisible here.
/// The purge deletes up to `$7` expired keys (never this one: one statement may not touch
/// a row twice), skipping rows another create holds.
pub const CREATE_IDEMPOTENT: &str = concat!(
    "WITH purged AS (
        DELETE FROM video_job_idempotency_keys
        WHERE (scope, idem_key) IN (
            SELECT scope, idem_key FROM video_job_idempotency_keys
            WHERE created_at <= now() - make_interval(secs => $6)
              AND NOT (scope = $3 AND idem_key = $4)
            ORDER BY created_at
            LIMIT $7
            FOR UPDATE SKIP LOCKED)
    ), k AS (
        INSERT INTO video_job_idempotency_keys AS k (scope, idem_key, fingerprint, job_id)
        VALUES ($3, $4, $5, $1)
        ON CONFLICT (scope, idem_key) DO UPDATE SET
            fingerprint = CASE WHEN k.created_at <= now() - make_interval(secs => $6)
                               THEN EXCLUDED.fingerprint ELSE k.fingerprint END,
            job_id = CASE WHEN k.created_at <= now() - make_interval(secs => $6)
                          THEN EXCLUDED.job_id ELSE k.job_id END,
            created_at = CASE WHEN k.created_at <= now() - make_interval(secs => $6)
                              THEN now() ELSE k.created_at END
        RETURNING k.job_id AS key_job_id, k.fingerprint = $5 AS same_request
    ), created AS (
        INSERT INTO video_jobs (id, input)
        SELECT $1, $2 FROM k WHERE k.key_job_id = $1
        RETURNING ",
    job_columns!(),
    "
    )
    SELECT k.key_job_id, k.same_request, (c.id IS NOT NULL) AS created, c.*
    FROM k LEFT JOIN created c ON true"
);
