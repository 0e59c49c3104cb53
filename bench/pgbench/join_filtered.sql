-- A join with a public table and a condition on it (database-side cost only;
-- row sampling filters the rows to those the join and condition keep).
SELECT s.city, sum(p.amount) FROM purchases p JOIN stores s ON p.store_id = s.store_id WHERE s.city <> 'Oslo' GROUP BY s.city;
