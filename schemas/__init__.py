"""The event contract: Avro schemas (avro/*.avsc), their Python mirrors and the codec."""
