-- Numbers a tenant watches for alerts. owner_since is an instant (owner_since_end NULL)
-- or a calendar day [owner_since_start, owner_since_end).
CREATE TABLE watchlist (
    tenant            TEXT NOT NULL,
    customer_ref      TEXT NOT NULL,
    number            TEXT NOT NULL,
    owner_since_start INTEGER NOT NULL,
    owner_since_end   INTEGER,
    updated_at        INTEGER NOT NULL,
    PRIMARY KEY (tenant, customer_ref)
);
CREATE INDEX watchlist_by_number ON watchlist (tenant, number);
