"""rossim: a protocol-faithful simulator of a MikroTik RouterOS router and ROSE Data Server.

One in-memory device model (persisted to a state file) exposed through the RouterOS binary API,
an SSH server speaking the RouterOS CLI (with SFTP), and a loopback HTTP control API for tests.
It deliberately shares no code with Trellis' own RouterOS clients.
"""

__version__ = "0.1.0"
ROUTEROS_VERSION = "7.20.4 (stable)"
