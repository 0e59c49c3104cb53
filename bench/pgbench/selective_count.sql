-- Selective count through an index (about 0.1% of people), with a bound
-- parameter: a $1 in the extended protocol, a literal in the simple one.
-- 20 distinct values, so the answer cache warms up within a run.
\set zip random(1, 20)
SELECT count(*) FROM people WHERE zip = :zip;
