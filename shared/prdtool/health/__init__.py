"""Health of every dependency (seed flow 6.1) and the client configuration."""
