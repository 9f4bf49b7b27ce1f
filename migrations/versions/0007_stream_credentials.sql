-- Live streams and their credentials: a key's revocation is announced at once (NOTIFY bgtasks_keys) so every
-- API process closes that key's open streams; the secret that signs browser read tokens; a per-user cap on
-- open streams.

CREATE FUNCTION notify_api_key_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('bgtasks_keys', json_build_object('id', OLD.id, 'change', 'deleted')::text);
        RETURN OLD;
    END IF;
    PERFORM pg_notify('bgtasks_keys', json_build_object(
        'id', NEW.id, 'change', CASE WHEN NEW.revoked_at IS NOT NULL THEN 'revoked' ELSE 'changed' END)::text);
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION notify_api_key_change() IS
  'Trigger: NOTIFY bgtasks_keys {"id", "change": revoked|changed|deleted} when a key is revoked, deleted or acts as someone else; API processes close the streams opened with it.';

-- Whoever revokes (bgtasks keys revoke, or an UPDATE at psql), the streams learn of it.
CREATE TRIGGER api_keys_notify_change
    AFTER UPDATE OF revoked_at, user_id, is_superuser ON api_keys
    FOR EACH ROW
    WHEN (OLD.revoked_at IS DISTINCT FROM NEW.revoked_at AND NEW.revoked_at IS NOT NULL
          OR OLD.user_id IS DISTINCT FROM NEW.user_id
          OR OLD.is_superuser IS DISTINCT FROM NEW.is_superuser)
    EXECUTE FUNCTION notify_api_key_change();
CREATE TRIGGER api_keys_notify_delete
    AFTER DELETE ON api_keys
    FOR EACH ROW
    EXECUTE FUNCTION notify_api_key_change();

CREATE TABLE service_secrets (
    name       text PRIMARY KEY,
    secret     bytea NOT NULL CHECK (length(secret) >= 32),
    created_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE service_secrets IS 'Secrets the API processes share, made on first use. read_tokens signs browser read tokens (subscribeToken) unless BGTASKS_TOKEN_SECRET is set; delete it and restart the API processes to invalidate every read token.';
COMMENT ON COLUMN service_secrets.name IS 'What the secret is for (read_tokens).';
COMMENT ON COLUMN service_secrets.secret IS '32 random bytes.';
COMMENT ON COLUMN service_secrets.created_at IS 'When it was made.';

ALTER TABLE user_limits ADD COLUMN max_streams integer CHECK (max_streams >= 0);
COMMENT ON COLUMN user_limits.max_streams IS 'Most live streams (SSE and WebSocket) this user may have open on one API process (HTTP 429 beyond); NULL: BGTASKS_MAX_STREAMS_PER_USER.';
