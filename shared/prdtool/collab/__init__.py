"""Real-time collaboration: the Yjs document of a PRD, its durable store, and connections."""
