-- Policies as the Fulcrum runbook queries them (sections 3.1 and 4.2).
CREATE TABLE policies (
  id         bigserial PRIMARY KEY,
  tenant_id  text NOT NULL,
  name       text NOT NULL,
  enabled    boolean NOT NULL DEFAULT true,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (tenant_id, name)
);

CREATE INDEX policies_tenant_enabled_idx ON policies (tenant_id, enabled);
