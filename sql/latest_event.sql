-- The latest event of the day: the freshness query of the activity table. A day whose latest
-- event is earlier than its end (less VM_LATE_TOLERANCE_MINUTES) was read before it was fully
-- loaded: it is reported late, not as a drop, and scored again by the next nightly runs.
-- Bound parameters: :start (inclusive) and :end (exclusive), both dates.
SELECT MAX(created_at) AS latest
FROM activityhistory
WHERE created_at >= :start
  AND created_at < :end
