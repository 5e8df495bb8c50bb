"""Live events to browsers: each run's channel and its bounded per-client queues (hub), and the
Server-Sent Events response that writes one subscriber's frames to its client (sse)."""
