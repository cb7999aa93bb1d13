-- Identity. Users are plain rows, not an event-sourced aggregate: nothing downstream folds
-- their history, and uniqueness of e-mail is a constraint the database enforces best.
CREATE TABLE users
(
    id             uuid PRIMARY KEY,
    email          text        NOT NULL,
    password_hash  text        NOT NULL,
    name           text        NOT NULL,
    organization   text,
    role           text        NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin', 'billing_admin')),
    monthly_budget numeric(18, 6),
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL
);
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

-- Failed logins, per e-mail, for rate limiting across instances.
CREATE TABLE login_failures
(
    email     text        NOT NULL,
    failed_at timestamptz NOT NULL
);
CREATE INDEX login_failures_email ON login_failures (email, failed_at);
