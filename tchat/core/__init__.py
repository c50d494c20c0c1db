"""Sans-IO protocol core: messages in, effects out; no sockets, no clock, no threads."""
