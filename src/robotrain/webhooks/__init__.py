"""Webhooks: users register endpoints; job status changes are delivered to them signed per Standard Webhooks, from a
durable outbox in the store, retried with exponential backoff, every attempt recorded."""
