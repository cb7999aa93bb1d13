-- A login attempt is recorded before its password is checked (and removed again when it
-- succeeds or is refused as throttled), so that attempts made at the same time count each
-- other; each row needs an id for that.
ALTER TABLE login_failures ADD COLUMN id bigint GENERATED ALWAYS AS IDENTITY;
