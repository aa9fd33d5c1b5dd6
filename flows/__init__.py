"""Prefect 3 wiring for seqae: thin tasks around one seqae function each, flows, deployments.

Every decision about data lives in ``seqae``; this package adds retries, caching, concurrency,
events and artifacts. ``seqae`` itself never imports Prefect.
"""
