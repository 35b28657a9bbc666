"""The functional core: pure data in, data out. No clock, files, sockets, threads or drivers here."""
