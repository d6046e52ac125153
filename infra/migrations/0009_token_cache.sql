-- The Helix access token shared by every process; refreshed by one caller under a row lock.
CREATE TABLE token_cache (
    name         text PRIMARY KEY,
    access_token text        NOT NULL,
    expires_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
