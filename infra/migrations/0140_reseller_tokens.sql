-- Reseller API tokens (projection reseller_tokens, from reseller.token_issued / _revoked): only
-- the token's SHA-256 is kept; the token itself was shown once to the operator who issued it.
CREATE TABLE reseller_tokens (
    token_id     text PRIMARY KEY,
    reseller_id  text        NOT NULL,
    name         text        NOT NULL,
    scope        text        NOT NULL CHECK (scope IN ('read', 'read-write')),
    token_hash   text        NOT NULL UNIQUE,
    expires_at   timestamptz NOT NULL,
    issued_by    text        NOT NULL,
    issued_at    timestamptz NOT NULL,
    revoked_at   timestamptz,
    revoked_by   text
);
CREATE INDEX reseller_tokens_reseller ON reseller_tokens (reseller_id, issued_at);
