"""Everything that talks to Kafka, and the composition: settings, services, gateway, CLI."""
