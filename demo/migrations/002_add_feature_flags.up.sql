-- The runbook's rollback switch: UPDATE feature_flags SET enabled = false WHERE name = '...'.
CREATE TABLE feature_flags (
  name       text PRIMARY KEY,
  enabled    boolean NOT NULL DEFAULT false,
  updated_at timestamptz NOT NULL DEFAULT now()
);
