"""Local RabbitMQ nodes and ZooKeeper servers of our own, from Debian's packages: for the fault
campaign (which kills and restarts them) and for ``rideshare infra`` (replicated infrastructure on
one machine). The system's own RabbitMQ and ZooKeeper are never touched."""
