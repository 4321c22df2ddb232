"""The SGEN worker process and its task catalog."""
