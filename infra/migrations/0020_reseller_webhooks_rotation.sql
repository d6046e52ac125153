-- Secret rotation: the previous secret keeps signing until previous_valid_until.
-- 410 Gone / operator: when and why an endpoint stopped receiving.
ALTER TABLE reseller_webhooks ADD COLUMN previous_valid_until timestamptz;
ALTER TABLE reseller_webhooks ADD COLUMN disabled_at timestamptz;
