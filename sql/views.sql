-- Views only: the team's engagement features read dwell times of views, never likes or shares.
SELECT event_id, user_id, item_id, duration_s, ts
FROM events
WHERE event_type = 'view'
