-- User-level GROUP BY over purchases (privacy unit person_id): dpproxy
-- bounds each person to 10 rows' worth in at most 3 categories.
SELECT category, count(*), avg(amount) FROM purchases GROUP BY category;
