-- Row-level GROUP BY over a public domain with avg: a full scan of people.
SELECT region, avg(income) FROM people GROUP BY region;
