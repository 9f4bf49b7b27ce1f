"""Peers and floor for the benchmark: procrastinate, pgqueuer and raw SQL on the same work as bgtasks."""
