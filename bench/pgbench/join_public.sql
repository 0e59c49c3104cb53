-- Join of the user-level purchases with the public stores table.
SELECT s.city, sum(p.amount) FROM purchases p JOIN stores s ON p.store_id = s.store_id GROUP BY s.city;
