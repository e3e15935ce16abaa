"""cdc-offload: deliver Moodle/IOMAD credential emails through AWS, read from the binlog."""

__version__ = "0.1.0"
