-- Daily order volume per country and payment method (the demo's second monitor).
-- Runs unchanged on SQLite, PostgreSQL and MariaDB/MySQL. The aggregation happens in the
-- database: only one row per (day, country, payment method) reaches Python.
-- Every order counts, whatever its status (paid, refunded, failed): status is no dimension.
-- Bound parameters: :start (inclusive) and :end (exclusive), both dates.
-- Contract: columns date, country, payment_method, count.
SELECT
    DATE(created_at) AS date,
    country,
    payment_method,
    COUNT(*) AS count
FROM orders
WHERE created_at >= :start
  AND created_at < :end
GROUP BY DATE(created_at), country, payment_method
