"""Live streams: a job's status changes, log lines and metric points, and a user's job changes, read from the store
with a cursor so any API process (and any store) can serve them."""
