"""Background maintenance (seed flow 4.2): garbage collection on a daily schedule."""
