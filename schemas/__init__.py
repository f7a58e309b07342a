"""Avro schemas (.avsc), schema ids (registry or Redis) and the Confluent wire format."""

from pathlib import Path

SCHEMA_DIR = Path(__file__).parent

__all__ = ["SCHEMA_DIR"]
