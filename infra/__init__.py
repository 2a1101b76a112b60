"""Local infrastructure: the single-node Kafka launcher and sample data for the tool backends."""
