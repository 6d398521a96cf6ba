"""Load generators and baselines for RideShare (``python -m rideshare.bench``).

Each benchmark drives N concurrent asyncio clients for a bounded time or number of requests,
and runs the same data work directly against PostgreSQL next to it, so that every figure comes
with the price of the layers RideShare adds (gateway, services, orchestrator, queues, workers).
"""
