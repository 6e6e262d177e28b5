"""Benchmarks of tiercache's Django backend against LocMemCache, RedisCache and django-redis.

Run ``python -m benchmarks`` from the repository root; see docs/benchmarks.md.
"""
