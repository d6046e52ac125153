-- When each reseller API token was last used (not a projection: written by the reseller API and
-- portal, at most once a minute per token and process), so an operator sees which tokens live.
CREATE TABLE reseller_token_uses (
    token_id     text PRIMARY KEY,
    last_used_at timestamptz NOT NULL,
    last_path    text        NOT NULL
);
