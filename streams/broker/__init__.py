"""Talking to the Kafka-compatible broker: client config, Tansu workarounds, topics, lag, dead letters, gaps."""
