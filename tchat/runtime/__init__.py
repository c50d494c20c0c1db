"""The real network runtime: uvloop transports, durable store, daemon, headless client, CLI glue."""
