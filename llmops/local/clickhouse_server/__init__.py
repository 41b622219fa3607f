"""The store service: the ClickHouse engine (chDB) on a data directory, serving ClickHouse's
HTTP interface on loopback so every process connects to it as to a ClickHouse server."""
