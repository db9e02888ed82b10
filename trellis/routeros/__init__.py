"""Clients for MikroTik RouterOS devices: the binary API (api.py) and the CLI over SSH."""
