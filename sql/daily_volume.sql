-- Daily event volume per channel, action and user agent.
-- Runs unchanged on SQLite, PostgreSQL and MariaDB/MySQL. The aggregation happens in the
-- database: only one row per (day, channel, action, user agent) reaches Python.
-- Bound parameters: :start (inclusive) and :end (exclusive), both dates.
-- Contract: columns date, channelid, actioncode, user_agent, count.
SELECT
    DATE(created_at) AS date,
    channelid,
    actioncode,
    user_agent,
    COUNT(*) AS count
FROM activityhistory
WHERE created_at >= :start
  AND created_at < :end
GROUP BY DATE(created_at), channelid, actioncode, user_agent
