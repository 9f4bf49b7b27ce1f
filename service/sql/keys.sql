-- API keys: create, look up by hash (every authenticated request), revoke, list. Only hashes are stored.

-- name: create_api_key
-- Store a new key's hash ($3) for user $1 with prefix $2, superuser flag $4 and label $5.
INSERT INTO api_keys (user_id, key_prefix, key_hash, is_superuser, label)
VALUES ($1, $2, $3, $4, $5)
RETURNING id, user_id, key_prefix, is_superuser, label, created_at, last_used_at, revoked_at;

-- name: api_key_by_hash
-- The key whose SHA-256 hex is $1, revoked or not; stale: its last use was recorded over a minute ago.
SELECT id, user_id, is_superuser, revoked_at,
       (last_used_at IS NULL OR last_used_at < now() - interval '1 minute') AS stale
FROM api_keys WHERE key_hash = $1;

-- name: touch_api_key
-- Record that key $1 was used, at most once a minute (keeps a hot key from writing on every request).
UPDATE api_keys SET last_used_at = now()
WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute');

-- name: revoke_api_key
-- Revoke the key with id $1 or hash $2 (keeps the first revocation time); no row when there is no such key.
UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())
WHERE id = $1 OR key_hash = $2
RETURNING id, user_id, key_prefix, is_superuser, label, created_at, last_used_at, revoked_at;

-- name: list_api_keys
-- Every key, newest first (never the hash).
SELECT id, user_id, key_prefix, is_superuser, label, created_at, last_used_at, revoked_at
FROM api_keys ORDER BY id DESC;

-- name: live_api_keys
-- Which of the key ids $1 (bigint[]) still exist and are not revoked (streams re-check their keys with it).
SELECT id FROM api_keys WHERE id = ANY ($1::bigint[]) AND revoked_at IS NULL;

-- name: create_service_secret
-- Store secret $2 (bytea) under name $1 unless one is there already: the first API process to start wins.
INSERT INTO service_secrets (name, secret) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING;

-- name: service_secret
-- The secret named $1 (e.g. read_tokens, which signs browser read tokens).
SELECT secret FROM service_secrets WHERE name = $1;
