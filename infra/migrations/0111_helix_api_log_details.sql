-- helix_api_logs keeps per call what the original system kept: the request and response headers
-- (redacted: authorization, cookies and every configured secret masked), the response as the
-- carrier sent it (raw text, redacted; response_body is its parsed JSON) and the run that made
-- the call (an operator lookup's run id, else the id of the event whose handling made it).
ALTER TABLE helix_api_logs
    ADD COLUMN request_headers  jsonb,
    ADD COLUMN response_headers jsonb,
    ADD COLUMN response_text    text,
    ADD COLUMN run_id           text;
CREATE INDEX helix_api_logs_run ON helix_api_logs (run_id) WHERE run_id IS NOT NULL;
