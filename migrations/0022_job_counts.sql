-- Lists at scale. A list answers its total from a count per owner and status, kept by
-- triggers on rm_jobs, instead of counting the owner's rows on every page; its page of ids
-- walks an index in the list's own order (id breaks ties between equal times).

CREATE TABLE rm_job_counts
(
    user_id uuid   NOT NULL,
    status  text   NOT NULL,
    n       bigint NOT NULL CHECK (n > 0),
    PRIMARY KEY (user_id, status)
);
INSERT INTO rm_job_counts (user_id, status, n)
SELECT user_id, status, count(*) FROM rm_jobs GROUP BY user_id, status;

-- A row leaves its (owner, status) and joins its new one. A count that reaches zero is
-- deleted, so the table is a function of rm_jobs alone (a replay, whose batches fold a job's
-- statuses in other steps, ends with the same rows). Table names are unqualified: a replay
-- copies these triggers onto its own rm_jobs, and its search_path points them at its copy.
CREATE FUNCTION rm_job_counts_follow() RETURNS trigger AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        DELETE FROM rm_job_counts WHERE user_id = OLD.user_id AND status = OLD.status AND n = 1;
        IF NOT FOUND THEN
            UPDATE rm_job_counts SET n = n - 1 WHERE user_id = OLD.user_id AND status = OLD.status;
        END IF;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO rm_job_counts (user_id, status, n) VALUES (NEW.user_id, NEW.status, 1)
        ON CONFLICT (user_id, status) DO UPDATE SET n = rm_job_counts.n + 1;
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER rm_jobs_counted AFTER INSERT OR DELETE ON rm_jobs
    FOR EACH ROW EXECUTE FUNCTION rm_job_counts_follow();
CREATE TRIGGER rm_jobs_recounted AFTER UPDATE OF user_id, status ON rm_jobs
    FOR EACH ROW WHEN (OLD.user_id IS DISTINCT FROM NEW.user_id OR OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION rm_job_counts_follow();

DROP INDEX rm_jobs_owner;
CREATE INDEX rm_jobs_owner ON rm_jobs (user_id, created_at DESC, id DESC);
CREATE INDEX rm_jobs_owner_status ON rm_jobs (user_id, status, created_at DESC, id DESC);
