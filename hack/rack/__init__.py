"""A rack of QEMU virtual servers, each behind its own BMC (IPMI or Redfish), for tests and `make up`.

``python -m rack serve --config rack.json --state-dir DIR`` runs every machine and BMC in one process;
``python -m rack check`` says whether QEMU can boot firmware here at all. See docs/development.md.
"""
