"""tchat: a distributed LAN chat with a replicated leader, LCR elections and vector clocks."""

__version__ = "0.1.0"
