"""The `primus-bridge` command and the shared way every verb reports errors."""
