"""Shared pieces every Trellis operator uses: conditions, kopf settings, status writes."""
