-- The delivery log's archive in PostgreSQL: finished deliveries and their attempts,
-- partitioned by the UTC day each delivery was created, so that retention drops a
-- whole day (deliveries and attempts together) instead of deleting rows. The
-- partitions are made as days come (webhooks/archive/store.py). Safe to run again.
CREATE TABLE IF NOT EXISTS webhooks_deliveries (
    id text COLLATE "C" NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    tenant_id text COLLATE "C",
    endpoint_id text COLLATE "C",
    event_id text COLLATE "C" NOT NULL,
    event_type text NOT NULL,
    url text NOT NULL,
    status text NOT NULL,
    stop_reason text,
    cycle integer NOT NULL DEFAULT 0,
    cycle_offset integer NOT NULL DEFAULT 0,
    queue text,
    attempt_count integer NOT NULL,
    body bytea NOT NULL,
    test boolean NOT NULL DEFAULT false,
    PRIMARY KEY (id, created_at)
) PARTITION BY RANGE (created_at);
-- A test event's delivery (POST .../endpoints/{id}/test); archives made before test
-- events existed gain the column here.
ALTER TABLE webhooks_deliveries ADD COLUMN IF NOT EXISTS test boolean NOT NULL DEFAULT false;
-- The ordering key a delivery was published with; archives made before gain it here.
ALTER TABLE webhooks_deliveries ADD COLUMN IF NOT EXISTS ordering_key text;

-- One index per listing the product offers, each in that listing's order (newest
-- first, ties by id in byte order, as Redis orders them), so that a page is an index
-- scan whatever the table's size.
CREATE INDEX IF NOT EXISTS webhooks_deliveries_by_created
    ON webhooks_deliveries (created_at, id);
CREATE INDEX IF NOT EXISTS webhooks_deliveries_by_tenant
    ON webhooks_deliveries (tenant_id, created_at, id);
CREATE INDEX IF NOT EXISTS webhooks_deliveries_by_status
    ON webhooks_deliveries (status, updated_at, id);
CREATE INDEX IF NOT EXISTS webhooks_deliveries_by_tenant_status
    ON webhooks_deliveries (tenant_id, status, updated_at, id);
CREATE INDEX IF NOT EXISTS webhooks_deliveries_by_endpoint
    ON webhooks_deliveries (endpoint_id, created_at, id);
CREATE INDEX IF NOT EXISTS webhooks_deliveries_by_endpoint_status
    ON webhooks_deliveries (endpoint_id, status, created_at, id);
CREATE INDEX IF NOT EXISTS webhooks_deliveries_by_event
    ON webhooks_deliveries (event_id);

-- Attempts, in their delivery's partition (created_at is the delivery's), so that a
-- day dropped takes its deliveries' attempts with it.
CREATE TABLE IF NOT EXISTS webhooks_attempts (
    delivery_id text COLLATE "C" NOT NULL,
    created_at timestamptz NOT NULL,
    number integer NOT NULL,
    attempt jsonb NOT NULL,
    PRIMARY KEY (delivery_id, created_at, number)
) PARTITION BY RANGE (created_at);

-- Archived deliveries by day, tenant ('' for none) and status: what `webhooks stats`
-- adds to Redis's counts, kept with each write so that it never counts rows.
CREATE TABLE IF NOT EXISTS webhooks_archive_counts (
    day date NOT NULL,
    tenant_id text COLLATE "C" NOT NULL,
    status text NOT NULL,
    count bigint NOT NULL,
    PRIMARY KEY (day, tenant_id, status)
);

-- Tenants whose archive was erased, and when: a delivery of theirs created before
-- then, still on its way from Redis, is never written.
CREATE TABLE IF NOT EXISTS webhooks_archive_erased (
    tenant_id text COLLATE "C" PRIMARY KEY,
    erased_at timestamptz NOT NULL
);
