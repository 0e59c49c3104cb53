-- Trivial DP count on a 1,000-row table: the database does almost nothing,
-- so this measures the proxy (parse, plan, charge, noise, respond).
SELECT count(*) FROM tiny;
